"""Tiles left out of analysis because they overlap damaged file tiles: split, describe, refuse."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import WsiRobustError
from ..tiling import TileGrid

DEFAULT_MAX_UNREADABLE_SHARE = 0.20


class TooManyUnreadableTilesError(WsiRobustError):
    """More of a slide's tissue tiles are unreadable than the allowed share."""


@dataclass(frozen=True)
class ExcludedTiles:
    """The tiles of a grid that were not embedded, with the count they came from."""

    coords: np.ndarray  # (M, 2) level-0 (x, y) of each tile's top-left corner
    rows: np.ndarray
    cols: np.ndarray
    total: int  # tiles in scope before exclusion

    @property
    def count(self) -> int:
        return len(self.coords)

    @property
    def share(self) -> float:
        return self.count / self.total if self.total else 0.0

    def describe(self, limit: int = 3) -> str:
        """One line for a status bar or a CLI warning ("" when nothing was excluded)."""
        if not self.count:
            return ""
        where = ", ".join(f"x {int(x)} y {int(y)}" for x, y in self.coords[:limit])
        more = f" and {self.count - limit} more" if self.count > limit else ""
        return (
            f"{self.count} of {self.total} tiles left out: they overlap damaged file tiles "
            f"(level-0 px {where}{more})"
        )


def split_unreadable(grid: TileGrid, features: np.ndarray) -> tuple[TileGrid, np.ndarray, ExcludedTiles]:
    """Drop the tiles whose features are NaN (not embedded: unreadable); returns the readable grid,
    its features and what was left out."""
    bad = np.isnan(features).any(axis=1) if len(features) else np.zeros(0, bool)
    excluded = ExcludedTiles(
        coords=grid.coords_level0[bad],
        rows=np.asarray(grid.rows)[bad],
        cols=np.asarray(grid.cols)[bad],
        total=len(grid),
    )
    if not bad.any():
        return grid, features, excluded
    return grid.subset(~bad), features[~bad], excluded


def check_unreadable_share(
    excluded: ExcludedTiles, slide_name: str, limit: float = DEFAULT_MAX_UNREADABLE_SHARE
) -> None:
    """Refuse a slide whose unreadable share of tissue tiles is above ``limit``."""
    if excluded.share > limit:
        raise TooManyUnreadableTilesError(
            f"{slide_name}: {excluded.count} of {excluded.total} tissue tiles ({excluded.share:.0%}) are "
            f"unreadable (damaged file tiles), more than the {limit:.0%} allowed; the prediction would "
            "rest on too little of the slide - re-scan or re-copy it"
        )
