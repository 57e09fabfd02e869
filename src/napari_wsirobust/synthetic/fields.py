"""Small numerical helpers for the synthetic slide generator: smooth random fields and resampling.

Large fields are built with as few full-size temporaries as possible (random draws in row chunks,
filtering and rescaling in place); every value is exactly what the plain whole-array formula gives.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
from scipy import ndimage

CHUNK_VALUES = 1 << 20  # values per row chunk of the chunked loops (4 MiB of float32)


def row_chunks(rows: int, row_values: int) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` row ranges covering ``rows`` rows of ``row_values`` values each."""
    step = max(1, CHUNK_VALUES // max(1, row_values))
    for start in range(0, rows, step):
        yield start, min(start + step, rows)


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], sigma: float | tuple[float, float]
) -> np.ndarray:
    """Gaussian-filtered white noise rescaled to zero mean and unit standard deviation."""
    field = np.empty(shape, np.float32)
    for a, b in row_chunks(shape[0], shape[1]):  # the same stream as one float64 draw of ``shape``
        field[a:b] = rng.standard_normal((b - a, shape[1]))
    ndimage.gaussian_filter(field, sigma=sigma, mode="reflect", output=field)
    std = float(field.std())
    field -= field.mean()
    field /= std if std > 0 else 1.0
    return field


def fibre_texture(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Stroma texture in [0, 1]: fibres along x and along y, mixed by a smooth random field.

    The two oriented fields wait in an anonymous temporary file (in the system temporary folder,
    8 bytes per cell) while the mix is drawn, so at most one full-size field and its filtering
    temporaries are in memory at a time.
    """
    with tempfile.TemporaryFile() as spill:
        for sigma in ((0.7, 3.5), (3.5, 0.7)):  # along x, then along y
            spill.write(memoryview(smooth_noise(rng, shape, sigma)).cast("B"))
        out = smooth_noise(rng, shape, 12.0)  # becomes the texture, chunk by chunk
        field_bytes = out.nbytes
        for a, b in row_chunks(shape[0], shape[1]):
            along_x = read_rows(spill, a * out[0].nbytes, (b - a, shape[1]))
            along_y = read_rows(spill, field_bytes + a * out[0].nbytes, (b - a, shape[1]))
            mix = soft_threshold(out[a:b], 0.0, 1.5)
            fibre = mix * along_x + (1 - mix) * along_y
            out[a:b] = np.clip(0.5 + 0.22 * fibre, 0.0, 1.0)
    return out


def read_rows(file: BinaryIO, offset: int, shape: tuple[int, int]) -> np.ndarray:
    """``shape`` float32 values read from ``file`` at byte ``offset`` (no memory map: the pages read
    stay in the page cache, not in this process's resident memory)."""
    out = np.empty(shape, np.float32)
    file.seek(offset)
    if file.readinto(memoryview(out).cast("B")) != out.nbytes:
        raise OSError("temporary field file is shorter than expected")
    return out


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
    upper, lower = field[iy], field[iy1]
    top = upper[:, ix] * (1 - wx) + upper[:, ix1] * wx
    bottom = lower[:, ix] * (1 - wx) + lower[:, ix1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def soft_threshold(values: np.ndarray, threshold: float, sharpness: float) -> np.ndarray:
    """Anti-aliased step: 0 below ``threshold``, 1 above, linear over ``1 / sharpness``."""
    return np.clip((values - threshold) * sharpness + 0.5, 0.0, 1.0).astype(np.float32)
