"""Checks made before a backend touches a file, so each common problem gets one clear sentence:
missing, unreadable, a folder, a symlink loop, empty, a truncated TIFF, an absurd size or number of
samples per pixel."""

from __future__ import annotations

import errno
import os
import struct
from pathlib import Path

from .errors import SlideNotFoundError, SlideReadError

# No scanner writes a level 0 larger than this on a side (1e6 px at 0.25 µm/px is 25 cm).
MAX_SIDE_PX = 1_000_000
# Samples per pixel accepted (RGB has 3, RGBA 4; multiplexed images rarely interleave more): a header
# stating thousands would make every full read of a level gigabytes.
MAX_CHANNELS = 64
TIFF_MAGIC = {
    b"II*\x00": ("<", False),
    b"MM\x00*": (">", False),
    b"II+\x00": ("<", True),
    b"MM\x00+": (">", True),
}


def check_path(path: Path) -> None:
    """Raise a :class:`SlideError` for a path that cannot be a slide whatever the backend."""
    try:
        path.stat()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise SlideReadError(path, "is a symbolic link loop (it points back to itself)") from exc
        if exc.errno == errno.EACCES:
            raise SlideReadError(path, "cannot be read: permission denied") from exc
        if path.is_symlink():
            raise SlideNotFoundError(path, f"is a broken symbolic link (to {os.readlink(path)})") from exc
        raise SlideNotFoundError(path, f"no such file ({path})") from exc
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise SlideReadError(path, "is a folder that cannot be read: permission denied")
        return
    if not os.access(path, os.R_OK):
        raise SlideReadError(path, "cannot be read: permission denied")
    size = path.stat().st_size
    if size == 0:
        raise SlideReadError(path, "is empty (0 bytes) - an incomplete copy?")


def tiff_kind(path: Path) -> tuple[str, bool] | None:
    """(byte order, is BigTIFF) when the file starts like a TIFF, else None."""
    try:
        with open(path, "rb") as fh:
            return TIFF_MAGIC.get(fh.read(4))
    except OSError:
        return None


def check_tiff_structure(path: Path) -> None:
    """Walk the chain of image directories (headers only) and refuse a file whose directories lie
    past its end or loop: the sign of an incomplete copy or a damaged header."""
    kind = tiff_kind(path)
    if kind is None:
        return
    order, big = kind
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(16)
        if big:
            if len(head) < 16:
                raise SlideReadError(path, f"truncated: only {size:,} bytes, less than a TIFF header")
            offset = struct.unpack(order + "Q", head[8:16])[0]
        else:
            if len(head) < 8:
                raise SlideReadError(path, f"truncated: only {size:,} bytes, less than a TIFF header")
            offset = struct.unpack(order + "I", head[4:8])[0]
        if offset == 0:
            raise SlideReadError(path, "contains no image (its TIFF header points to no image directory)")
        seen: set[int] = set()
        count_fmt, count_size, entry_size, next_fmt = ("Q", 8, 20, "Q") if big else ("H", 2, 12, "I")
        while offset:
            if offset in seen:
                raise SlideReadError(
                    path, f"has a damaged header: its image directories loop at byte {offset:,}"
                )
            seen.add(offset)
            if offset + count_size > size:
                raise SlideReadError(
                    path,
                    f"truncated: ends at {size:,} bytes but its image directory {len(seen)} starts at "
                    f"{offset:,} - an incomplete copy?",
                )
            fh.seek(offset)
            (n,) = struct.unpack(order + count_fmt, fh.read(count_size))
            end = offset + count_size + n * entry_size + struct.calcsize(next_fmt)
            if end > size:
                raise SlideReadError(
                    path,
                    f"truncated: ends at {size:,} bytes but its image directory {len(seen)} runs to "
                    f"{end:,} - an incomplete copy?",
                )
            fh.seek(offset + count_size + n * entry_size)
            (offset,) = struct.unpack(order + next_fmt, fh.read(struct.calcsize(next_fmt)))
            if len(seen) > 100_000:
                raise SlideReadError(path, "has a damaged header: more than 100,000 image directories")


def check_dimensions(path: Path, width: int, height: int) -> None:
    """Refuse a level 0 that no scanner produces (a damaged or forged header)."""
    if width <= 0 or height <= 0:
        raise SlideReadError(path, f"states an empty image ({width:,} x {height:,} px) - a damaged header?")
    if max(width, height) > MAX_SIDE_PX:
        raise SlideReadError(
            path,
            f"states {width:,} x {height:,} px, more than any scanner produces ({MAX_SIDE_PX:,} px on a "
            "side) - a damaged header?",
        )


def check_channels(path: Path, channels: int) -> None:
    """Refuse a samples-per-pixel count no slide has (a damaged header)."""
    if channels > MAX_CHANNELS:
        raise SlideReadError(
            path,
            f"states {channels:,} samples per pixel, more than the {MAX_CHANNELS} accepted - a damaged "
            "header?",
        )
