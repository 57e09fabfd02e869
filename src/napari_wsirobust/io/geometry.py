"""Coordinate conventions shared by every layer the plugin adds.

napari centres pixel ``k`` of a layer with scale ``s`` and translate ``t`` at world coordinate
``t + k*s``. A slide layer has scale = MPP and translate 0, so level-0 pixel ``k`` covers
``[(k - 0.5) * mpp, (k + 0.5) * mpp]`` µm. A coarse grid whose cell ``i`` covers level-0 pixels
``[i*step, (i+1)*step)`` therefore needs scale ``step*mpp`` and translate ``(step - 1) * mpp / 2``
to overlay the slide exactly.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np

ArrayOrFloat = TypeVar("ArrayOrFloat", float, np.ndarray)


def grid_layer_transform(
    step_px: float | tuple[float, float], mpp: tuple[float, float]
) -> tuple[tuple[float, float], tuple[float, float]]:
    """(scale, translate) in (y, x) order for a grid of ``step_px`` level-0 pixels per cell over a
    slide with pixel size ``mpp = (mpp_x, mpp_y)``."""
    sy, sx = (step_px, step_px) if isinstance(step_px, (int, float)) else step_px
    mx, my = mpp
    scale = (sy * my, sx * mx)
    translate = ((sy - 1) * my / 2, (sx - 1) * mx / 2)
    return scale, translate


def level0_to_world(
    x: ArrayOrFloat, y: ArrayOrFloat, mpp: tuple[float, float]
) -> tuple[ArrayOrFloat, ArrayOrFloat]:
    """World (y, x) µm of level-0 pixel coordinate (x, y), where integer coordinates are pixel
    corners (pixel k spans k..k+1, its centre k + 0.5 lands on world k * mpp). Works on arrays."""
    return ((y - 0.5) * mpp[1], (x - 0.5) * mpp[0])
