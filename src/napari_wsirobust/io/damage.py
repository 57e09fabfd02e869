"""Unreadable file tiles: the record a slide keeps of them and the warning users see once."""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path


class DamagedTileWarning(UserWarning):
    """A file tile could not be decoded; it is shown as blank background."""


class UnreadableRegionError(Exception):
    """A strict read touched a file tile that cannot be decoded (internal: callers exclude the region)."""

    def __init__(self, tiles: list[DamagedTile]) -> None:
        self.tiles = tiles
        super().__init__(f"{len(tiles)} unreadable file tile(s)")


@dataclass(frozen=True)
class DamagedTile:
    """One file tile that failed: its level, index (row, col), level-pixel box and why."""

    level: int
    row: int
    col: int
    box: tuple[int, int, int, int]  # (x0, y0, x1, y1) in that level's pixels
    reason: str

    def describe(self) -> str:
        x0, y0, x1, y1 = self.box
        return (
            f"level {self.level} tile ({self.row}, {self.col}) at x {x0}-{x1}, y {y0}-{y1} px: {self.reason}"
        )


class DamageLog:
    """Thread-safe set of the damaged file tiles met so far; warns once per slide on the first."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._tiles: dict[tuple[int, int, int], DamagedTile] = {}
        self._lock = threading.Lock()
        self._warned = False

    def add(self, tile: DamagedTile) -> None:
        with self._lock:
            key = (tile.level, tile.row, tile.col)
            if key in self._tiles:
                return
            self._tiles[key] = tile
            first = not self._warned
            self._warned = True
        if first:
            warnings.warn(
                DamagedTileWarning(
                    f"{self._path.name}: a damaged file tile is shown blank ({tile.describe()}); "
                    "analysis leaves out the tiles it covers"
                ),
                stacklevel=2,
            )

    def has(self, level: int, row: int, col: int) -> bool:
        with self._lock:
            return (level, row, col) in self._tiles

    @property
    def tiles(self) -> list[DamagedTile]:
        """Every damaged tile found so far, sorted by level and position."""
        with self._lock:
            return [self._tiles[k] for k in sorted(self._tiles)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._tiles)
