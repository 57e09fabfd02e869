"""Lazy whole-slide image access: open_slide and the WSI object (no Qt, no napari)."""

from __future__ import annotations

from .describe import format_metadata
from .errors import MissingMPPWarning, NotASlideError, SlideError, SlideNotFoundError, SlideReadError
from .geometry import grid_layer_transform, level0_to_world
from .slide import LAYER_METADATA_KEY, PLAUSIBLE_MPP_RANGE, SUPPORTED_SUFFIXES, WSI, SlideMetadata, open_slide

__all__ = [
    "LAYER_METADATA_KEY",
    "MissingMPPWarning",
    "NotASlideError",
    "PLAUSIBLE_MPP_RANGE",
    "SUPPORTED_SUFFIXES",
    "SlideError",
    "SlideMetadata",
    "SlideNotFoundError",
    "SlideReadError",
    "WSI",
    "format_metadata",
    "grid_layer_transform",
    "level0_to_world",
    "open_slide",
]
