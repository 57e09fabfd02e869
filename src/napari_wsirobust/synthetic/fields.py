"""Small numerical helpers for the synthetic slide generator: smooth random fields and resampling."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]
) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    noise = rng.standard_normal(shape).astype(np.float32)
    field = ndimage.gaussian_filter(noise, sigma=sigma, mode="reflect")
    std = float(field.std())
    return (field - field.mean()) / (std if std > 0 else 1.0)


def sample_rows(field: np.ndarray, step: float, y0: int, y1: int, width: int) -> np.ndarray:
    """Bilinearly sample ``field`` (one value per ``step`` level-0 pixels, sampled at cell centres)
    on level-0 pixel rows ``y0..y1`` and columns ``0..width``.

    Rows outside the slide are clamped to the border, so a band with a margin stays defined.
    """
    fy = (np.arange(y0, y1, dtype=np.float64) + 0.5) / step - 0.5
    fx = (np.arange(width, dtype=np.float64) + 0.5) / step - 0.5
    h, w = field.shape
    fy = np.clip(fy, 0, h - 1)
    fx = np.clip(fx, 0, w - 1)
    iy = np.minimum(np.floor(fy).astype(np.intp), h - 2) if h > 1 else np.zeros(fy.shape, np.intp)
    ix = np.minimum(np.floor(fx).astype(np.intp), w - 2) if w > 1 else np.zeros(fx.shape, np.intp)
    wy = (fy - iy).astype(np.float32)[:, None] if h > 1 else np.zeros((fy.size, 1), np.float32)
    wx = (fx - ix).astype(np.float32)[None, :] if w > 1 else np.zeros((1, fx.size), np.float32)
    iy1 = np.minimum(iy + 1, h - 1)
    ix1 = np.minimum(ix + 1, w - 1)
    top = field[iy][:, ix] * (1 - wx) + field[iy][:, ix1] * wx
    bottom = field[iy1][:, ix] * (1 - wx) + field[iy1][:, ix1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def soft_threshold(values: np.ndarray, threshold: float, sharpness: float) -> np.ndarray:
    """Anti-aliased step: 0 below ``threshold``, 1 above, linear over ``1 / sharpness``."""
    return np.clip((values - threshold) * sharpness + 0.5, 0.0, 1.0).astype(np.float32)
