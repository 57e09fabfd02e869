"""Lazy whole-slide image access through tiffslide, OpenSlide or wsidicom: open_slide and the WSI
object (no Qt, no napari)."""

from __future__ import annotations

from .backends import BACKENDS, SUPPORTED_SUFFIXES, is_dicom
from .colour import COLOUR_MODES, check_colour_mode
from .damage import DamagedTile, DamagedTileWarning, UnreadableRegionError
from .describe import format_metadata
from .errors import MissingMPPWarning, NotASlideError, SlideError, SlideNotFoundError, SlideReadError
from .geometry import grid_layer_transform, level0_to_world
from .slide import LAYER_METADATA_KEY, PLAUSIBLE_MPP_RANGE, WSI, SlideMetadata, open_slide
from .source import EncodedTile

__all__ = [
    "BACKENDS",
    "COLOUR_MODES",
    "DamagedTile",
    "DamagedTileWarning",
    "EncodedTile",
    "LAYER_METADATA_KEY",
    "MissingMPPWarning",
    "NotASlideError",
    "PLAUSIBLE_MPP_RANGE",
    "SUPPORTED_SUFFIXES",
    "SlideError",
    "SlideMetadata",
    "SlideNotFoundError",
    "SlideReadError",
    "UnreadableRegionError",
    "WSI",
    "check_colour_mode",
    "format_metadata",
    "grid_layer_transform",
    "is_dicom",
    "level0_to_world",
    "open_slide",
]
