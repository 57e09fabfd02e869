"""Stain and scanner colour (no Qt): scanner-swapped tile views, stain profiles estimated from
slides, colour transfer between profiles, JPEG quality, and harmonising tiles into one profile.
"""

from __future__ import annotations

from .augment import ScannerAugmentation, TileTransform, VirtualScanner, render_with_scanner
from .harmonise import (
    BLUR_SAMPLE_TILES,
    Harmonisation,
    HarmonisationError,
    SlidePlan,
    choose_reference,
    reference_for_slides,
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
    "ProfileError",
    "ScannerAugmentation",
    "SlidePlan",
    "StainProfile",
    "TileTransform",
    "VirtualScanner",
    "angle_degrees",
    "choose_reference",
    "combine_profiles",
    "estimate_open_slide_profile",
    "estimate_site_profiles",
    "estimate_slide_profile",
    "estimate_stain_profile",
    "jpeg_quality_of_slide",
    "matching_blur_sigma",
    "reference_for_slides",
    "render_with_scanner",
    "transfer_tile",
]
