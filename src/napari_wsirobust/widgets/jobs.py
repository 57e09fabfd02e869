"""Running a long compute generator from a dock's worker: cancellation and user-facing errors (no Qt).

:func:`guarded` wraps a progress generator so that it never raises: it returns an :class:`Outcome`
holding the value, a message for the user, or ``cancelled``. Cancelling sets a
:class:`threading.Event`; the wrapped generator is then closed *in the worker thread* at its next
progress step (so clean-up such as stopping tile readers never runs on the GUI thread).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ..errors import is_user_error, user_message

T = TypeVar("T")
LOG = logging.getLogger("napari_wsirobust")


@dataclass
class Outcome(Generic[T]):
    value: T | None = None
    error: str = ""
    cancelled: bool = False

    @property
    def ok(self) -> bool:
        return not self.error and not self.cancelled and self.value is not None


def lower_thread_priority(increment: int = 10) -> bool:
    """Make the calling thread (and threads it starts later) yield the CPU to the GUI thread.

    On Linux a thread has its own nice value and threads it creates inherit it, so a worker that calls
    this before its first torch operation also lowers the compute threads torch starts from it. The GUI
    thread keeps its priority: on a machine with few cores, a worker embedding tiles then slows itself
    down instead of the viewer's panning. Returns whether the thread now runs at the lowered priority
    (False on the main thread and where per-thread priorities do not exist); never raises.
    """
    if not sys.platform.startswith("linux"):
        return False  # elsewhere the id of a thread is not something setpriority accepts
    if threading.current_thread() is threading.main_thread():
        return False  # never demote the GUI (or a command-line program's only) thread
    tid = threading.get_native_id()
    try:
        target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + increment)  # main thread's + n
        if os.getpriority(os.PRIO_PROCESS, tid) < target:  # pooled threads come back already lowered
            os.setpriority(os.PRIO_PROCESS, tid, target)
    except OSError:
        return False
    return True


def guarded(gen: Generator[Any, None, T], cancel: threading.Event) -> Generator[Any, None, Outcome[T]]:
    """Yield ``gen``'s progress; return its value, its error as a message, or a cancellation.

    Iterated from a worker thread, that thread first gives itself a lower CPU priority
    (:func:`lower_thread_priority`) so the viewer stays responsive while it computes.
    """
    lower_thread_priority()
    try:
        while True:
            if cancel.is_set():
                return Outcome(cancelled=True)
            try:
                item = next(gen)
            except StopIteration as stop:
                return Outcome(value=stop.value)
            yield item
    except Exception as exc:  # reported to the user; the GUI keeps running
        if not is_user_error(exc):  # a bug: the status says so, the traceback goes to the log
            LOG.error("internal error in a worker", exc_info=exc)
        return Outcome(error=user_message(exc))
    finally:
        gen.close()
