"""Colour management: the slide's embedded ICC profile applied to tiles (littleCMS via Pillow)."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np

from ..errors import InputError

ColourMode = Literal["as-scanned", "srgb"]
COLOUR_MODES: tuple[str, ...] = ("as-scanned", "srgb")


def check_colour_mode(color: str) -> str:
    """``color`` if it is a known mode, else an :class:`InputError` naming the choices."""
    if color not in COLOUR_MODES:
        raise InputError(f"color must be one of {', '.join(COLOUR_MODES)}, got {color!r}")
    return color


def profile_description(icc: bytes) -> str:
    """The profile's own description, or a placeholder when it has none."""
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        return ImageCms.getProfileDescription(profile).strip() or "unnamed profile"
    except (OSError, ImageCms.PyCMSError):
        return "unreadable profile"


class SrgbTransform:
    """Converts RGB uint8 tiles from an embedded ICC profile to sRGB (perceptual intent).
    Raises :class:`ValueError` at construction when the profile cannot be used."""

    def __init__(self, icc: bytes) -> None:
        from PIL import ImageCms

        try:
            source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            target = ImageCms.createProfile("sRGB")
            self._transform = ImageCms.buildTransform(source, target, "RGB", "RGB")
        except (OSError, ImageCms.PyCMSError) as exc:
            raise ValueError(f"the embedded colour profile cannot be used ({exc})") from exc

    def __call__(self, tile: np.ndarray) -> np.ndarray:
        from PIL import Image, ImageCms

        if tile.ndim != 3 or tile.shape[2] != 3 or tile.dtype != np.uint8 or tile.size == 0:
            return tile
        image = Image.fromarray(np.ascontiguousarray(tile), "RGB")
        return np.asarray(ImageCms.applyTransform(image, self._transform))
