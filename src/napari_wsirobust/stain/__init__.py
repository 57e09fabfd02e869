"""Stain and scanner colour (no Qt): scanner-swapped tile views, stain profiles estimated from
slides, colour transfer between profiles, JPEG quality, and harmonising tiles into one profile.
"""

from __future__ import annotations

from .augment import ScannerAugmentation, TileTransform, VirtualScanner, render_with_scanner
from .distance import UNLIKE_THRESHOLD, ScannerCheck, check_scanner, scaled_differences
from .harmonise import (
    BLUR_SAMPLE_TILES,
    PROFILE_TILES,
    Harmonisation,
    HarmonisationError,
    SlidePlan,
    choose_reference,
    profile_from_dict,
    reference_for_slides,
    training_site_profiles,
)
from .jpeg import jpeg_quality_of_slide
from .profile import (
    ProfileError,
    StainProfile,
    angle_degrees,
    combine_profiles,
    estimate_open_slide_profile,
    estimate_site_profiles,
    estimate_slide_profile,
    estimate_stain_profile,
)
from .transfer import matching_blur_sigma, transfer_tile

__all__ = [
    "BLUR_SAMPLE_TILES",
    "Harmonisation",
    "HarmonisationError",
    "PROFILE_TILES",
    "ProfileError",
    "ScannerAugmentation",
    "ScannerCheck",
    "SlidePlan",
    "StainProfile",
    "TileTransform",
    "UNLIKE_THRESHOLD",
    "VirtualScanner",
    "angle_degrees",
    "check_scanner",
    "choose_reference",
    "combine_profiles",
    "estimate_open_slide_profile",
    "estimate_site_profiles",
    "estimate_slide_profile",
    "estimate_stain_profile",
    "jpeg_quality_of_slide",
    "matching_blur_sigma",
    "profile_from_dict",
    "reference_for_slides",
    "render_with_scanner",
    "scaled_differences",
    "training_site_profiles",
    "transfer_tile",
]
