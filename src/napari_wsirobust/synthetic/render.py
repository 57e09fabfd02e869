"""Beer-Lambert rendering of stain concentrations through a scanner profile.

For stain concentrations c_H, c_E and the profile's scaled stain OD vectors s_H, s_E, the transmitted
light per channel is I = I0 * exp(-(c_H s_H + c_E s_E) * ln 10), i.e. optical density
OD = -log10(I / I0) is linear in the concentrations. The scanner then blurs (focus), applies its
gamma and adds sensor noise; JPEG compression happens when the tiles are written.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage

from .fields import row_chunks
from .profiles import ScannerProfile

LN10 = float(np.log(10.0))


def blur_margin_px(profile: ScannerProfile, mpp: float) -> int:
    """Rows of context a band needs on each side so blurring it matches blurring the whole slide."""
    sigma = profile.blur_sigma_um / mpp
    return int(np.ceil(4 * sigma)) + 1 if sigma > 0 else 0


def noise_generator(seed: int, profile: ScannerProfile, band_index: int) -> np.random.Generator:
    """Sensor-noise generator for one band: depends on tissue seed, profile and band only."""
    return np.random.default_rng([seed, 2, zlib.crc32(profile.name.encode()), band_index])


def concentrations_to_rgb(
    hema: np.ndarray,
    eosin: np.ndarray,
    profile: ScannerProfile,
    mpp: float,
    rng: np.random.Generator | None,
    margin: int = 0,
) -> np.ndarray:
    """Render (H, W) concentrations to an (H - 2*margin, W, 3) uint8 RGB band.

    ``margin`` rows at the top and bottom are context for the blur and are cropped away. Only the
    blurred light is held for the whole band; everything else happens a few rows at a time.
    """
    light = transmitted_light(hema, eosin, profile)
    sigma = profile.blur_sigma_um / mpp
    if sigma > 0:
        for c in range(3):
            channel = light[..., c]
            ndimage.gaussian_filter(channel, sigma=sigma, mode="nearest", output=channel)
    rows, width = hema.shape[0] - 2 * margin, hema.shape[1]
    out = np.empty((rows, width, 3), np.uint8)
    for a, b in row_chunks(rows, 3 * width):
        rgb = light[margin + a : margin + b]
        if profile.gamma != 1.0:
            rgb = 255.0 * np.power(np.clip(rgb / 255.0, 0.0, 1.0), 1.0 / profile.gamma)
        if rng is not None and profile.noise_sigma > 0:  # drawn in row order: one stream per band
            rgb = rgb + rng.standard_normal(rgb.shape, dtype=np.float32) * profile.noise_sigma
        out[a:b] = np.clip(np.rint(rgb), 0, 255)
    return out


def transmitted_light(hema: np.ndarray, eosin: np.ndarray, profile: ScannerProfile) -> np.ndarray:
    """(H, W, 3) float32 Beer-Lambert light I0 * 10**-OD of (H, W) H and E concentrations."""
    stains = profile.stain_matrix  # (2, 3)
    background = np.asarray(profile.background_rgb, dtype=np.float32)
    light = np.empty((*hema.shape, 3), np.float32)
    for a, b in row_chunks(hema.shape[0], 3 * hema.shape[1]):
        od = hema[a:b, :, None] * stains[0] + eosin[a:b, :, None] * stains[1]
        light[a:b] = background * np.exp(-LN10 * od, dtype=np.float32)
    return light
