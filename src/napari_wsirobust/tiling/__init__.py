"""Tissue detection and tiling at a target physical resolution (no Qt)."""

from __future__ import annotations

from .grid import MissingMPPError, Scope, TileGrid, TilingConfig, make_tile_grid, read_tile
from .tissue import TissueMask, TissueMaskConfig, detect_tissue, read_overview

__all__ = [
    "MissingMPPError",
    "Scope",
    "TileGrid",
    "TilingConfig",
    "TissueMask",
    "TissueMaskConfig",
    "detect_tissue",
    "make_tile_grid",
    "read_overview",
    "read_tile",
]
