"""Tissue detection and tiling at a target physical resolution (no Qt)."""

from .grid import Scope, TileGrid, TilingConfig, make_tile_grid, read_tile
from .tissue import TissueMask, TissueMaskConfig, detect_tissue

__all__ = [
    "Scope",
    "TileGrid",
    "TilingConfig",
    "TissueMask",
    "TissueMaskConfig",
    "detect_tissue",
    "make_tile_grid",
    "read_tile",
]
