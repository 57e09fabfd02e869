"""Tissue detection and tiling at a target physical resolution (no Qt)."""

from __future__ import annotations

from .grid import (
    MissingMPPError,
    Scope,
    TileGrid,
    TilingConfig,
    make_tile_grid,
    read_readable_tiles,
    read_tile,
    require_mpp,
)
from .mpp import parse_mpp
from .tissue import TissueMask, TissueMaskConfig, detect_tissue, percentile_of_histogram, read_overview

__all__ = [
    "MissingMPPError",
    "Scope",
    "TileGrid",
    "TilingConfig",
    "TissueMask",
    "TissueMaskConfig",
    "detect_tissue",
    "make_tile_grid",
    "parse_mpp",
    "percentile_of_histogram",
    "read_overview",
    "read_readable_tiles",
    "read_tile",
    "require_mpp",
]
