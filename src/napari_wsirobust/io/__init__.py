"""Lazy whole-slide image access (no Qt, no napari)."""

from .errors import (
    MissingMPPWarning,
    NotASlideError,
    SlideError,
    SlideNotFoundError,
    SlideReadError,
)
from .slide import SUPPORTED_SUFFIXES, WSI, SlideMetadata, open_slide

__all__ = [
    "SUPPORTED_SUFFIXES",
    "WSI",
    "MissingMPPWarning",
    "NotASlideError",
    "SlideError",
    "SlideMetadata",
    "SlideNotFoundError",
    "SlideReadError",
    "open_slide",
]
