"""Stain and scanner colour handling (no Qt): scanner-swapped tile views."""

from .augment import ScannerAugmentation, TileTransform, VirtualScanner, render_with_scanner

__all__ = ["ScannerAugmentation", "TileTransform", "VirtualScanner", "render_with_scanner"]
