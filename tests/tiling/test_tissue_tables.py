"""The tissue detector's table look-ups give exactly what converting every pixel gave: HSV
saturation and value, mean optical density, the pen-mark test and the final masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from skimage import color, filters, morphology

from napari_wsirobust.io import open_slide
from napari_wsirobust.tiling import (
    Scope,
    TilingConfig,
    TissueMaskConfig,
    detect_tissue,
    make_tile_grid,
    read_overview,
)
from napari_wsirobust.tiling import tissue as tissue_module
from napari_wsirobust.tiling.tissue import tissue_mask_from_rgb

CONFIG = TissueMaskConfig()


def reference_mask(
    rgb: np.ndarray, area: float, config: TissueMaskConfig = CONFIG
) -> tuple[np.ndarray, float]:
    """The detector written with a full ``rgb2hsv`` conversion of every pixel (as it was first written)."""
    hsv = color.rgb2hsv(rgb)
    artefact = hsv[..., 2] <= config.max_dark_value
    artefact |= (hsv[..., 0] * 360.0 > 70) & (hsv[..., 0] * 360.0 < 230) & (hsv[..., 1] > 0.25)
    glass = np.percentile(rgb[~artefact].reshape(-1, 3).astype(np.float64), 95, axis=0).clip(1, 255)
    od = np.clip(-np.log10(np.clip(rgb.astype(np.float64), 1, 255) / glass), 0, None).mean(axis=-1)
    threshold = max(float(filters.threshold_otsu(hsv[..., 1][~artefact])), config.min_saturation)
    mask = (hsv[..., 1] > threshold) & (od > config.min_od) & ~artefact
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3), bool), iterations=1)
    mask = morphology.remove_small_objects(mask, max_size=max(int(round(config.min_object_um2 / area)), 1))
    mask = morphology.remove_small_holes(mask, max_size=max(int(round(config.max_hole_um2 / area)), 1))
    return mask & ~artefact, threshold


def _overviews(shared_slides: Path, tumour_slide: Path) -> list[np.ndarray]:
    images = []
    for path in (shared_slides / "cmu-1-small-region.svs", shared_slides / "kidney-48-5.tif", tumour_slide):
        with open_slide(path) as slide:
            images.append(read_overview(slide, TissueMaskConfig(mask_mpp=2.0))[0])
    pen = images[-1].copy()
    pen[:, 40:70] = (40, 160, 70)
    pen[100:130, :] = (30, 60, 190)
    pen[200:220, 100:300] = (10, 10, 10)
    images.append(pen)
    images.append(np.random.default_rng(0).integers(0, 256, (200, 300, 3), dtype=np.uint8))
    return images


def test_masks_equal_the_per_pixel_conversion(shared_slides: Path, tumour_slide: Path) -> None:
    for rgb in _overviews(shared_slides, tumour_slide):
        expected, threshold = reference_mask(rgb, area=4.0)
        mask, got_threshold = tissue_mask_from_rgb(rgb, pixel_area_um2=4.0)
        assert got_threshold == threshold
        np.testing.assert_array_equal(mask, expected)
        hsv = color.rgb2hsv(rgb)
        saturation, value = tissue_module._saturation_value(rgb)
        np.testing.assert_array_equal(saturation, hsv[..., 1])
        np.testing.assert_array_equal(value, hsv[..., 2])


def test_pen_test_equals_the_full_conversion_on_every_colour() -> None:
    levels = np.arange(256, dtype=np.uint8)
    g, b = np.meshgrid(levels, levels, indexing="ij")
    for red in range(256):  # one plane of the RGB cube at a time
        plane = np.stack([np.full_like(g, red), g, b], axis=-1)
        hsv = color.rgb2hsv(plane)
        expected = (hsv[..., 2] <= CONFIG.max_dark_value) | (
            (hsv[..., 0] * 360.0 > 70) & (hsv[..., 0] * 360.0 < 230) & (hsv[..., 1] > 0.25)
        )
        saturation, value = tissue_module._saturation_value(plane)
        got = tissue_module._artefacts(plane, saturation, value, CONFIG)
        if not np.array_equal(got, expected):
            pytest.fail(f"pen/ink test differs for red={red} at {np.argwhere(got != expected)[:3].tolist()}")


def test_non_8_bit_overviews_are_refused() -> None:
    with pytest.raises(ValueError, match="8-bit RGB"):
        tissue_mask_from_rgb(np.zeros((8, 8, 3), np.float64), pixel_area_um2=1.0)


@pytest.mark.parametrize("mpp", [None, 0.37])
@pytest.mark.parametrize(
    "config",
    [TilingConfig(), TilingConfig(target_mpp=0.7, min_tissue_fraction=0.1), TilingConfig(overlap=56)],
    ids=["default", "coarser", "overlap"],
)
def test_grid_keeps_the_tiles_the_per_tile_fraction_keeps(
    shared_slides: Path, tumour_slide: Path, mpp: float | None, config: TilingConfig
) -> None:
    for path in (shared_slides / "cmu-1-small-region.svs", tumour_slide):
        with open_slide(path, mpp=mpp) as slide:
            tissue = detect_tissue(slide)
            grid = make_tile_grid(slide, config, Scope.whole(), tissue)
        n_rows, n_cols = grid.grid_shape
        rows, cols = (a.ravel() for a in np.mgrid[0:n_rows, 0:n_cols])
        x0, y0 = cols * grid.stride_level0[0], rows * grid.stride_level0[1]
        w, h = grid.tile_size_level0
        exact = np.array([tissue.fraction_in(a, b, a + w, b + h) for a, b in zip(x0, y0)])
        keep = exact >= config.min_tissue_fraction
        assert keep.any()
        np.testing.assert_array_equal(grid.rows, rows[keep])
        np.testing.assert_array_equal(grid.cols, cols[keep])
        np.testing.assert_allclose(grid.tissue_fraction, exact[keep], rtol=0, atol=1e-12)


def test_glass_colour_equals_the_float_percentile(shared_slides: Path, tumour_slide: Path) -> None:
    for rgb in _overviews(shared_slides, tumour_slide):
        saturation, value = tissue_module._saturation_value(rgb)
        artefact = tissue_module._artefacts(rgb, saturation, value, CONFIG)
        expected = np.percentile(rgb[~artefact].reshape(-1, 3).astype(np.float64), 95, axis=0).clip(1, 255)
        np.testing.assert_array_equal(tissue_module._glass_from(rgb, artefact), expected)


def test_percentile_of_a_histogram_equals_numpys_percentile() -> None:
    rng = np.random.default_rng(1)
    for _ in range(400):
        values = rng.integers(0, int(rng.integers(1, 256)) + 1, int(rng.integers(1, 5000))).astype(np.uint8)
        counts = np.bincount(values, minlength=256)
        for q in (0.0, 2.0, 50.0, 95.0, 99.0, 100.0):
            assert tissue_module.percentile_of_histogram(counts, q) == np.percentile(values.astype(float), q)
    with pytest.raises(ValueError, match="empty"):
        tissue_module.percentile_of_histogram(np.zeros(256, np.int64), 95.0)


def test_mean_optical_density_equals_the_per_pixel_mean(shared_slides: Path, tumour_slide: Path) -> None:
    for rgb in _overviews(shared_slides, tumour_slide):
        glass = np.array([241.0, 236.5, 250.0])
        expected = np.clip(-np.log10(np.clip(rgb.astype(np.float64), 1, 255) / glass), 0, None).mean(axis=-1)
        np.testing.assert_array_equal(tissue_module._mean_optical_density(rgb, glass), expected)
