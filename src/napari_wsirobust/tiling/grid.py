"""Tile grids at a target physical resolution, restricted to a scope.

The grid is anchored at the slide's level-0 origin: tile (row, col) covers level-0 x from
``col * stride`` to ``col * stride + size`` (and likewise in y), where ``size`` and ``stride`` are the
target tile size converted to level-0 pixels with the slide's MPP. Because the anchoring never
depends on the scope, the same tile has the same coordinates whether it came from the whole slide,
a viewport or a polygon, so cached features are reused across scopes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace

import numpy as np
from PIL import Image
from skimage.measure import points_in_poly

from ..errors import InputError
from ..io import WSI, SlideError, UnreadableRegionError, level0_to_world
from .tissue import TissueMask


class MissingMPPError(SlideError):
    """Tiling at a physical resolution needs the slide's pixel size."""


@dataclass(frozen=True)
class TilingConfig:
    """Tile size in pixels at ``target_mpp`` µm/px, optional overlap, and the minimum tissue
    fraction (from the tissue mask) a tile needs to be kept."""

    tile_size: int = 224
    target_mpp: float = 0.5
    overlap: int = 0
    min_tissue_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.tile_size < 8:
            raise InputError(f"tile_size must be at least 8 px, got {self.tile_size}")
        if not 0.05 <= self.target_mpp <= 50:
            raise InputError(f"target_mpp must be within 0.05..50 µm/px, got {self.target_mpp}")
        if not 0 <= self.overlap < self.tile_size:
            raise InputError("overlap must be within 0..tile_size-1")
        if not 0.0 <= self.min_tissue_fraction <= 1.0:
            raise InputError("min_tissue_fraction must be within 0..1")

    def identity(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class Scope:
    """Which part of the slide to tile.

    ``kind`` is ``"whole"``, ``"rect"`` (``rect_um`` = (y0, x0, y1, x1) in slide µm, napari's world
    axis order, e.g. the visible canvas) or ``"polygons"`` (``polygons_um``: arrays of (y, x)
    vertices in µm, e.g. a napari Shapes selection). A tile belongs to a rect or polygon scope when
    its centre lies inside.
    """

    kind: str = "whole"
    rect_um: tuple[float, float, float, float] | None = None
    polygons_um: tuple[np.ndarray, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in ("whole", "rect", "polygons"):
            raise ValueError(f"scope kind must be whole, rect or polygons, got {self.kind!r}")
        if self.kind == "rect" and (self.rect_um is None or len(self.rect_um) != 4):
            raise ValueError("a rect scope needs rect_um = (y0, x0, y1, x1) in µm")
        if self.kind == "polygons":
            polys = tuple(np.asarray(p, dtype=np.float64) for p in self.polygons_um)
            if not polys or any(p.ndim != 2 or p.shape[1] != 2 or len(p) < 3 for p in polys):
                raise InputError("a polygons scope needs at least one (N >= 3, 2) vertex array")
            object.__setattr__(self, "polygons_um", polys)

    @classmethod
    def whole(cls) -> Scope:
        return cls("whole")

    @classmethod
    def rect(cls, y0: float, x0: float, y1: float, x1: float) -> Scope:
        return cls("rect", rect_um=(min(y0, y1), min(x0, x1), max(y0, y1), max(x0, x1)))

    @classmethod
    def polygons(cls, polygons: list[np.ndarray] | tuple[np.ndarray, ...]) -> Scope:
        return cls("polygons", polygons_um=tuple(polygons))

    def contains(self, y_um: np.ndarray, x_um: np.ndarray) -> np.ndarray:
        """Which points (in µm) lie inside the scope."""
        if self.kind == "whole":
            return np.ones(np.shape(y_um), bool)
        if self.kind == "rect":
            y0, x0, y1, x1 = self.rect_um  # type: ignore[misc]
            return (y_um >= y0) & (y_um <= y1) & (x_um >= x0) & (x_um <= x1)
        points = np.column_stack([np.ravel(x_um), np.ravel(y_um)])
        inside = np.zeros(len(points), bool)
        for poly in self.polygons_um:
            inside |= points_in_poly(points, poly[:, ::-1])
        return inside.reshape(np.shape(y_um))

    def identity(self) -> str:
        data: dict[str, object] = {"kind": self.kind}
        if self.rect_um is not None:
            data["rect_um"] = [round(float(v), 3) for v in self.rect_um]
        if self.polygons_um:
            data["polygons_um"] = [np.round(p, 3).tolist() for p in self.polygons_um]
        return hashlib.sha1(json.dumps(data).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TileGrid:
    """The kept tiles of one slide.

    ``rows``/``cols`` index the global grid; ``x0``/``y0`` are level-0 pixel coordinates of each
    tile's top-left corner (float: the tile size in level-0 pixels need not be an integer);
    ``tile_size_level0`` = (width, height) in level-0 px; ``read_level`` is the pyramid level tiles
    are read from before resizing to ``config.tile_size``.
    """

    config: TilingConfig
    mpp: tuple[float, float]
    rows: np.ndarray
    cols: np.ndarray
    x0: np.ndarray
    y0: np.ndarray
    tissue_fraction: np.ndarray
    tile_size_level0: tuple[float, float]
    stride_level0: tuple[float, float]
    grid_shape: tuple[int, int]
    read_level: int

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def coords_level0(self) -> np.ndarray:
        """(N, 2) integer level-0 (x, y) of the tile corners (CLAM/TRIDENT ``coords`` layout)."""
        return np.column_stack([np.floor(self.x0), np.floor(self.y0)]).astype(np.int64)

    @property
    def coords_um(self) -> np.ndarray:
        """(N, 2) (y, x) world coordinates in µm of the tile corners (napari axis order)."""
        return np.column_stack(level0_to_world(self.x0, self.y0, self.mpp))

    def subset(self, keep: np.ndarray) -> TileGrid:
        """The tiles selected by a boolean mask or index array, same geometry."""
        return replace(
            self,
            rows=self.rows[keep],
            cols=self.cols[keep],
            x0=self.x0[keep],
            y0=self.y0[keep],
            tissue_fraction=self.tissue_fraction[keep],
        )

    def geometry_identity(self) -> str:
        """What fixes the pixels of every tile (not which tiles are selected)."""
        return json.dumps(
            {
                "tile_size": self.config.tile_size,
                "target_mpp": self.config.target_mpp,
                "overlap": self.config.overlap,
                "mpp": [round(m, 6) for m in self.mpp],
                "read_level": self.read_level,
            },
            sort_keys=True,
        )

    @property
    def centres_um(self) -> np.ndarray:
        """(N, 2) (y, x) µm of the tile centres."""
        w, h = self.tile_size_level0
        return np.column_stack(level0_to_world(self.x0 + w / 2, self.y0 + h / 2, self.mpp))


def require_mpp(slide: WSI) -> tuple[float, float]:
    """The slide's (x, y) pixel size, or :class:`MissingMPPError` saying how to give it."""
    mpp = slide.mpp
    if mpp is None:
        raise MissingMPPError(
            slide.path,
            "has no pixel size (MPP), so tiles at a physical resolution cannot be placed; give it in "
            "µm/px: in the cohort CSV's mpp column; on the command line with --mpp; in napari with the "
            "Slide info dock's MPP override or the mpp column of the Train dock's table; in Python "
            "with open_slide(path, mpp=...)",
        )
    return mpp


def make_tile_grid(
    slide: WSI,
    config: TilingConfig = TilingConfig(),
    scope: Scope = Scope(),
    tissue: TissueMask | None = None,
) -> TileGrid:
    """The tiles of ``slide`` inside ``scope`` with at least ``config.min_tissue_fraction`` tissue
    (all tiles in scope when ``tissue`` is None)."""
    mpp = require_mpp(slide)
    width, height = slide.dimensions
    size = (config.tile_size * config.target_mpp / mpp[0], config.tile_size * config.target_mpp / mpp[1])
    step = config.tile_size - config.overlap
    stride = (step * config.target_mpp / mpp[0], step * config.target_mpp / mpp[1])
    n_cols = max(0, int(np.floor((width - size[0]) / stride[0])) + 1)
    n_rows = max(0, int(np.floor((height - size[1]) / stride[1])) + 1)
    rows, cols = np.mgrid[0:n_rows, 0:n_cols]
    rows, cols = rows.ravel(), cols.ravel()
    x0 = cols * stride[0]
    y0 = rows * stride[1]
    cy, cx = level0_to_world(x0 + size[0] / 2, y0 + size[1] / 2, mpp)
    keep = scope.contains(cy, cx)
    fractions = np.ones(rows.size)
    if tissue is not None:
        idx = np.flatnonzero(keep)
        fractions[idx] = tissue.fractions_in(x0[idx], y0[idx], size[0], size[1])
        # the few tiles within rounding of the threshold are decided by the exact per-tile sum
        for i in idx[np.abs(fractions[idx] - config.min_tissue_fraction) < 1e-9]:
            fractions[i] = tissue.fraction_in(x0[i], y0[i], x0[i] + size[0], y0[i] + size[1])
        keep &= fractions >= config.min_tissue_fraction
    downsample = config.target_mpp / max(mpp)
    return TileGrid(
        config=config,
        mpp=mpp,
        rows=rows[keep],
        cols=cols[keep],
        x0=x0[keep].astype(np.float64),
        y0=y0[keep].astype(np.float64),
        tissue_fraction=fractions[keep],
        tile_size_level0=size,
        stride_level0=stride,
        grid_shape=(n_rows, n_cols),
        read_level=slide.best_level_for_downsample(downsample),
    )


def read_tile(slide: WSI, grid: TileGrid, index: int, strict: bool = False) -> np.ndarray:
    """Tile ``index`` of ``grid`` as a (tile_size, tile_size, 3) uint8 array, read from
    ``grid.read_level`` and resized (area-averaging when shrinking) to the target resolution.
    ``strict``: raise :class:`~napari_wsirobust.io.UnreadableRegionError` when the tile overlaps a
    damaged file tile (instead of reading blank background there)."""
    level = grid.read_level
    dx, dy = slide.level_downsample(level)
    x0, y0 = grid.x0[index] / dx, grid.y0[index] / dy
    w, h = grid.tile_size_level0[0] / dx, grid.tile_size_level0[1] / dy
    xa, ya = int(np.floor(x0)), int(np.floor(y0))
    xb, yb = int(np.ceil(x0 + w)), int(np.ceil(y0 + h))
    region = slide.read_level_window(level, xa, ya, xb, yb, strict=strict)
    ts = grid.config.tile_size
    box = (x0 - xa, y0 - ya, x0 - xa + w, y0 - ya + h)
    if region.shape[:2] == (ts, ts) and box == (0.0, 0.0, float(ts), float(ts)):
        return region
    resample = Image.Resampling.BOX if w > ts else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(region).resize((ts, ts), resample=resample, box=box))


def read_readable_tiles(slide: WSI, grid: TileGrid, indices: Iterable[int]) -> list[np.ndarray]:
    """The tiles among ``indices`` that do not overlap damaged file tiles, in order (for sampling
    statistics: a blank stand-in must not count as tissue)."""
    tiles = []
    for i in indices:
        try:
            tiles.append(read_tile(slide, grid, int(i), strict=True))
        except UnreadableRegionError:
            continue
    return tiles
