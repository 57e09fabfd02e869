"""Scanner-swapped views: deterministic, tissue-preserving, colour-changing, cached separately."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_wsirobust.io import open_slide
from napari_wsirobust.stain import ScannerAugmentation, VirtualScanner, render_with_scanner
from napari_wsirobust.stain.augment import _reference_basis
from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid, read_tile


def _tile(tumour_slide: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    with open_slide(tumour_slide) as slide:
        tissue = detect_tissue(slide)
        grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), tissue)
        return read_tile(slide, grid, len(grid) // 2), tissue.glass_rgb


def test_neutral_scanner_is_nearly_identity(tumour_slide: Path) -> None:
    tile, glass = _tile(tumour_slide)
    assert min(glass) >= 225  # scanner A's glass is (236, 240, 250)
    h, e, _ = _reference_basis()
    neutral = VirtualScanner(tuple(h), tuple(e), 1.0, 1.0, glass, 1.0, 0.0, 0.0, 100)
    out = render_with_scanner(tile, neutral, 0.5, np.random.default_rng(0), glass)
    assert out.shape == tile.shape and out.dtype == np.uint8
    # JPEG (with its chroma subsampling) is part of every view; colour statistics stay put
    assert np.abs(out.astype(float) - tile).mean() < 5.0
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), tile.reshape(-1, 3).mean(0), atol=2.0)


def test_views_are_deterministic_and_change_colour_not_structure(tumour_slide: Path) -> None:
    tile, glass = _tile(tumour_slide)
    aug = ScannerAugmentation(seed=3)
    a = aug.for_slide("slide-x", 0.5, glass)(tile, 2, 5)
    b = aug.for_slide("slide-x", 0.5, glass)(tile, 2, 5)
    np.testing.assert_array_equal(a, b)
    other = ScannerAugmentation(seed=4).for_slide("slide-x", 0.5, glass)(tile, 2, 5)
    assert np.abs(other.astype(float) - a).mean() > 1.0
    # colour statistics move, but the tissue layout (darkness ranking of pixels) is kept
    assert np.abs(a.reshape(-1, 3).mean(0) - tile.reshape(-1, 3).mean(0)).max() > 2.0
    grey_in, grey_out = tile.mean(-1).ravel(), a.mean(-1).ravel()
    assert np.corrcoef(grey_in, grey_out)[0, 1] > 0.8


def test_identity_changes_with_parameters() -> None:
    assert ScannerAugmentation(seed=0).identity() == ScannerAugmentation(seed=0).identity()
    assert ScannerAugmentation(seed=0).identity() != ScannerAugmentation(seed=0, view=1).identity()
    scanner = ScannerAugmentation().scanner_for("s")
    assert 60 <= scanner.jpeg_quality <= 95 and 0.75 <= scanner.hematoxylin_scale <= 1.3
