"""The unlike-training check: a slide's colour profile against the training sites' profiles."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from napari_wsirobust.stain import UNLIKE_THRESHOLD, StainProfile, check_scanner, scaled_differences
from napari_wsirobust.stain.distance import TOLERANCES

SITE_A = StainProfile(
    hematoxylin_od=(0.60, 0.72, 0.34),
    eosin_od=(0.09, 0.97, 0.22),
    background_rgb=(236.0, 240.0, 250.0),
    concentration_p50=(0.2, 0.3),
    concentration_p99=(1.2, 0.8),
    sharpness=400.0,
    n_pixels=10_000,
    jpeg_quality=92,
)
SITE_C = replace(
    SITE_A,
    background_rgb=(244.0, 242.0, 226.0),
    concentration_p99=(0.9, 0.7),
    sharpness=120.0,
    jpeg_quality=65,
)
SITES = {"A": SITE_A, "C": SITE_C}


def test_a_training_sites_own_profile_is_at_distance_zero() -> None:
    check = check_scanner(SITE_C, SITES)
    assert check.distance == pytest.approx(0.0, abs=1e-6) and check.nearest_site == "C"
    assert not check.unlike_training and check.warning() == ""


def test_a_much_blurrier_slide_is_unlike_and_the_warning_names_the_nearest_site_and_property() -> None:
    blurred = replace(SITE_C, sharpness=SITE_C.sharpness / 8)  # 3 tolerances softer than C
    check = check_scanner(blurred, SITES)
    assert check.nearest_site == "C"
    assert check.differs_most_in == "sharpness"
    assert check.distance == pytest.approx(math.log(8) / TOLERANCES["sharpness"])
    assert check.unlike_training and check.distance > UNLIKE_THRESHOLD
    assert check.warning() == (
        "scanner unlike every training site - nearest C (differs most in sharpness); calls may shift"
    )


def test_small_differences_stay_below_the_threshold() -> None:
    near = replace(SITE_A, sharpness=SITE_A.sharpness * 1.2, background_rgb=(240.0, 243.0, 249.0))
    check = check_scanner(near, SITES)
    assert check.nearest_site == "A" and 0 < check.distance < UNLIKE_THRESHOLD


def test_each_property_is_scaled_by_its_tolerance() -> None:
    other = replace(
        SITE_A,
        hematoxylin_od=(0.70, 0.68, 0.22),
        background_rgb=(224.0, 240.0, 250.0),
        concentration_p99=(2.4, 0.8),
        jpeg_quality=62,
    )
    diff = scaled_differences(other, SITE_A)
    assert diff["glass colour"] == pytest.approx(12.0 / TOLERANCES["glass colour"])
    assert diff["haematoxylin intensity"] == pytest.approx(math.log(2) / TOLERANCES["haematoxylin intensity"])
    assert diff["eosin intensity"] == 0.0
    assert diff["JPEG quality"] == pytest.approx(30 / TOLERANCES["JPEG quality"])
    assert diff["haematoxylin direction"] > 1 and diff["eosin direction"] == pytest.approx(0.0, abs=1e-6)


def test_jpeg_quality_is_compared_only_when_both_profiles_know_it() -> None:
    unknown = replace(SITE_A, jpeg_quality=None)
    assert "JPEG quality" not in scaled_differences(unknown, SITE_C)
    assert "JPEG quality" in scaled_differences(SITE_A, SITE_C)


def test_no_sites_is_refused() -> None:
    with pytest.raises(ValueError, match="no training site profiles"):
        check_scanner(SITE_A, {})
