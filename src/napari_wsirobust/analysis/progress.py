"""Passing a compute generator's progress on, converted (shared by analysis and diagnostics)."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

T = TypeVar("T")


def relay(gen: Generator[Any, None, T], convert: Callable[[Any], Any]) -> Generator[Any, None, T]:
    """Yield ``convert(item)`` for each progress item of ``gen``; return ``gen``'s value."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        yield convert(item)
