"""Stain profile estimation recovers the synthetic scanners' known profiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.stain import (
    angle_degrees,
    combine_profiles,
    estimate_slide_profile,
    estimate_stain_profile,
)
from napari_wsirobust.synthetic import SCANNER_PROFILES

# Tolerance for a recovered stain vector: 4 degrees. The truth differs between scanners by 4.7-16
# degrees (A vs C haematoxylin is the closest pair), and Macenko's extreme-angle estimate is biased
# by the display gamma (0.9-1.15), blur and JPEG of the synthetic scanners; so besides the absolute
# tolerance, each estimate must be closer to its own scanner's vectors than to any other scanner's.
TOLERANCE_DEG = 4.0


def _distance(profile, scanner: str) -> float:  # type: ignore[no-untyped-def]
    truth = SCANNER_PROFILES[scanner]
    return angle_degrees(profile.hematoxylin_od, truth.hematoxylin_od) + angle_degrees(
        profile.eosin_od, truth.eosin_od
    )


def test_slide_profiles_recover_the_scanner_profiles(same_tissue_three_scanners: dict[str, Path]) -> None:
    profiles = {s: estimate_slide_profile(str(p)) for s, p in same_tissue_three_scanners.items()}
    for scanner, profile in profiles.items():
        truth = SCANNER_PROFILES[scanner]
        assert angle_degrees(profile.hematoxylin_od, truth.hematoxylin_od) < TOLERANCE_DEG
        assert angle_degrees(profile.eosin_od, truth.eosin_od) < TOLERANCE_DEG
        assert min("ABC", key=lambda s: _distance(profile, s)) == scanner
        # glass tint within 8 grey levels (gamma lifts it slightly on the faded scanner C)
        assert np.abs(np.subtract(profile.background_rgb, truth.background_rgb)).max() < 8
    # focus blur 0 / 0.35 / 0.6 µm: sharpness falls in that order
    assert profiles["A"].sharpness > profiles["B"].sharpness > profiles["C"].sharpness
    # stronger staining on B (scales 1.2 / 1.25) than on C (0.8 / 0.95)
    assert profiles["B"].concentration_p99[0] > profiles["C"].concentration_p99[0]


def test_combined_profile_and_refusals(same_tissue_three_scanners: dict[str, Path]) -> None:
    one = estimate_slide_profile(str(same_tissue_three_scanners["A"]), seed=1)
    two = estimate_slide_profile(str(same_tissue_three_scanners["A"]), seed=2)
    both = combine_profiles([one, two])
    assert np.isclose(np.linalg.norm(both.hematoxylin_od), 1.0)
    assert angle_degrees(both.hematoxylin_od, SCANNER_PROFILES["A"].hematoxylin_od) < TOLERANCE_DEG
    assert both.n_pixels == one.n_pixels + two.n_pixels
    with pytest.raises(ValueError, match="RGB"):
        estimate_stain_profile(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="tissue pixels"):
        estimate_stain_profile(np.full((20, 20, 3), 240, np.uint8))
    with pytest.raises(ValueError, match="no slide profiles"):
        combine_profiles([])


def test_table_and_integer_paths_equal_the_float_formulas(shared_slides: Path) -> None:
    """8-bit pixels take look-up tables (optical density) and integer arithmetic (glass colour):
    exactly the figures of the float formulas."""
    from napari_wsirobust.io import open_slide
    from napari_wsirobust.stain.profile import estimate_background, optical_density
    from napari_wsirobust.tiling import TissueMaskConfig, read_overview

    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)]
    images.append(np.clip(rng.normal(200, 30, (150, 170, 3)), 0, 255).astype(np.uint8))
    for name in ("cmu-1-small-region.svs", "kidney-48-5.tif"):
        with open_slide(shared_slides / name) as slide:
            images.append(read_overview(slide, TissueMaskConfig(mask_mpp=2.0))[0][..., :3].copy())
    for rgb in images:
        px = rgb.reshape(-1, 3).astype(np.float64)
        saturation = px.max(axis=1) - px.min(axis=1)
        calm = px[saturation <= np.percentile(saturation, 50)]
        bright = calm[calm.sum(axis=1) >= np.percentile(calm.sum(axis=1), 98)]
        expected_glass = np.median(bright, axis=0)
        np.testing.assert_array_equal(estimate_background(rgb), expected_glass)
        np.testing.assert_array_equal(estimate_background(rgb.astype(np.float64)), expected_glass)
        expected_od = -np.log10(np.clip(px + 1.0, 1.0, None) / (expected_glass + 1.0))
        np.testing.assert_array_equal(optical_density(rgb.reshape(-1, 3), expected_glass), expected_od)
        np.testing.assert_array_equal(optical_density(px, expected_glass), expected_od)


def test_sharpness_from_channels_equals_the_averaged_image() -> None:
    from scipy import ndimage

    from napari_wsirobust.stain.profile import grey_sharpness, tissue_sharpness

    rng = np.random.default_rng(5)
    for _ in range(5):
        rgb = rng.integers(0, 256, (120, 90, 3)).astype(np.float64) + rng.random((120, 90, 3))
        tissue = rng.random((120, 90)) > 0.4
        expected = float(ndimage.laplace(rgb.mean(axis=2))[tissue].var())
        assert tissue_sharpness(rgb, tissue) == expected
        channels = tuple(np.ascontiguousarray(rgb[..., c]) for c in range(3))
        assert grey_sharpness(channels, tissue) == expected  # type: ignore[arg-type]
