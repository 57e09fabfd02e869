"""Reduced pyramid levels built band by band and parked in anonymous temporary files.

Level k is the 2x box downsampling of level k-1 (odd last row and column dropped), exactly as if
each level were downsampled as a whole: rows arrive in order, pairs are reduced as soon as both are
there and an odd row waits for the next band. The files have no name on disk, so nothing is left
behind when the process ends, however it ends; the pages written live in the page cache, not in
this process's memory.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from typing import BinaryIO

import numpy as np


def downsample2(image: np.ndarray) -> np.ndarray:
    """2x2 box downsampling of an (H, W, C) uint8 image (odd edges are dropped), rounded half up."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    total = image[0:h:2, 0:w:2].astype(np.uint16)
    total += image[0:h:2, 1:w:2]
    total += image[1:h:2, 0:w:2]
    total += image[1:h:2, 1:w:2]
    total += 2
    total >>= 2
    return total.astype(np.uint8)


class LevelSpool:
    """Levels 1..``levels`` of a pyramid whose level-0 rows are ``push``-ed top to bottom."""

    def __init__(self, levels: int, width: int, folder: str | os.PathLike[str]) -> None:
        self.widths = [width >> k for k in range(1, levels + 1)]
        self.heights = [0] * levels
        self.rows = 0  # level-0 rows pushed so far
        self._carry: list[np.ndarray | None] = [None] * levels
        self._stack = ExitStack()  # closes the files: on close() or at the end of a with block
        self._files: list[BinaryIO] = [
            self._stack.enter_context(tempfile.TemporaryFile(dir=folder))  # noqa: SIM115
            for _ in range(levels)
        ]

    def push(self, rows: np.ndarray) -> None:
        """Add the next rows of level 0 and reduce them through every level."""
        self.rows += rows.shape[0]
        for k, file in enumerate(self._files):
            carry = self._carry[k]
            if carry is not None:
                rows = np.concatenate([carry, rows])
            self._carry[k] = rows[-1:].copy() if rows.shape[0] % 2 else None
            rows = downsample2(rows[: rows.shape[0] // 2 * 2])
            if not rows.shape[0]:
                return
            file.write(memoryview(rows).cast("B"))
            self.heights[k] += rows.shape[0]

    def bands(self, level: int, rows: int) -> Iterator[np.ndarray]:
        """Level ``level`` (1-based) read back in bands of ``rows`` rows, top to bottom."""
        file, width, height = self._files[level - 1], self.widths[level - 1], self.heights[level - 1]
        file.flush()
        file.seek(0)
        for y in range(0, height, rows):
            band = np.empty((min(rows, height - y), width, 3), np.uint8)
            if file.readinto(memoryview(band).cast("B")) != band.nbytes:
                raise OSError(f"temporary file of pyramid level {level} is shorter than expected")
            yield band

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> LevelSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
