"""A safetensors file's header, read without touching its tensor data (so nothing is allocated).

Layout (huggingface/safetensors): 8 bytes little-endian header length N; N bytes of JSON
``{name: {"dtype": str, "shape": [int, ...], "data_offsets": [begin, end]}, "__metadata__": {str: str}}``;
then the data, which the tensors' offsets (relative to the end of the header) tile exactly.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DTYPE_BYTES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E5M2": 1,
    "F8_E4M3": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
MAX_HEADER_BYTES = 100_000_000  # the limit safetensors itself applies


class SafetensorsHeaderError(ValueError):
    """The file is not a complete safetensors file; the message says what is wrong, without the path
    (callers add it and raise their own user-facing error)."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header describes it."""

    dtype: str
    shape: tuple[int, ...]


def read_safetensors_header(path: str | os.PathLike[str]) -> dict[str, TensorEntry]:
    """Name -> dtype and shape of every tensor in ``path``, in the header's order, after checking that
    the header is JSON and that every tensor's bytes lie inside the file (a truncated file fails)."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        prefix = f.read(8)
        if len(prefix) < 8:
            raise SafetensorsHeaderError(f"truncated: {size} bytes, too short to hold the header length")
        n = int.from_bytes(prefix, "little")
        if n > MAX_HEADER_BYTES or 8 + n > size:
            raise SafetensorsHeaderError(
                f"truncated or not safetensors: its header length ({n} bytes) points past the end of "
                f"the file ({size} bytes)"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SafetensorsHeaderError(f"its header is not JSON ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsHeaderError("its header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsHeaderError("its __metadata__ is not an object of strings")
    entries: dict[str, TensorEntry] = {}
    spans: list[tuple[int, int, str]] = []
    for name, spec in header.items():
        entry, span = _entry(name, spec)
        entries[name] = entry
        spans.append((*span, name))
    _check_spans(spans, size - 8 - n)
    return entries


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _entry(name: str, spec: Any) -> tuple[TensorEntry, tuple[int, int]]:
    if not isinstance(spec, dict):
        raise SafetensorsHeaderError(f"its header entry for {name} is not an object")
    dtype, shape, offsets = spec.get("dtype"), spec.get("shape"), spec.get("data_offsets")
    if dtype not in DTYPE_BYTES:
        raise SafetensorsHeaderError(f"tensor {name} has an unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_is_count(d) for d in shape):
        raise SafetensorsHeaderError(f"tensor {name} has a malformed shape {shape!r}")
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_count(o) for o in offsets):
        raise SafetensorsHeaderError(f"tensor {name} has malformed data_offsets {offsets!r}")
    begin, end = offsets
    if end - begin != math.prod(shape) * DTYPE_BYTES[dtype]:
        raise SafetensorsHeaderError(
            f"tensor {name} of shape {tuple(shape)} ({dtype}) does not match its {end - begin} data bytes"
        )
    return TensorEntry(dtype, tuple(shape)), (begin, end)


def _check_spans(spans: list[tuple[int, int, str]], data_bytes: int) -> None:
    """The tensors' bytes must follow one another from the start of the data to the end of the file."""
    position = 0
    for begin, end, name in sorted(spans):
        if end > data_bytes:
            raise SafetensorsHeaderError(
                f"truncated: tensor {name} ends at data byte {end} but the file holds only {data_bytes}"
            )
        if begin != position:
            raise SafetensorsHeaderError(f"tensor {name}'s data overlaps another or leaves a gap")
        position = end
    if position != data_bytes:
        raise SafetensorsHeaderError(f"{data_bytes - position} bytes after the last tensor belong to none")
