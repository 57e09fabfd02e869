"""A slide's pixel size as a user writes it: a table cell or CSV field in µm/px, blank for the file's."""

from __future__ import annotations

import math

from ..errors import InputError
from ..io import PLAUSIBLE_MPP_RANGE


def parse_mpp(text: str | None, where: str) -> float | None:
    """The pixel size (µm/px) in ``text``; None when blank (the slide file's own is used).

    Anything but a number within :data:`~napari_wsirobust.io.PLAUSIBLE_MPP_RANGE` (0, negative,
    NaN, text) raises :class:`~napari_wsirobust.errors.InputError` naming ``where`` and the value."""
    text = (text or "").strip()
    if not text:
        return None
    lo, hi = PLAUSIBLE_MPP_RANGE
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:  # NaN fails too
        raise InputError(
            f"{where}: mpp {text!r} is not a pixel size; write µm/px within {lo:g}..{hi:g} (e.g. 0.25), "
            "or leave it blank to use the slide file's"
        )
    return value
