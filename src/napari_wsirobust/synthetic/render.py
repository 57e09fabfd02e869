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

    ``margin`` rows at the top and bottom are context for the blur and are cropped away.
    """
    stains = profile.stain_matrix  # (2, 3)
    od = hema[..., None] * stains[0] + eosin[..., None] * stains[1]
    background = np.asarray(profile.background_rgb, dtype=np.float32)
    rgb = background * np.exp(-LN10 * od, dtype=np.float32)
    sigma = profile.blur_sigma_um / mpp
    if sigma > 0:
        for c in range(3):
            rgb[..., c] = ndimage.gaussian_filter(rgb[..., c], sigma=sigma, mode="nearest")
    if margin:
        rgb = rgb[margin:-margin]
    if profile.gamma != 1.0:
        rgb = 255.0 * np.power(np.clip(rgb / 255.0, 0.0, 1.0), 1.0 / profile.gamma)
    if rng is not None and profile.noise_sigma > 0:
        rgb = rgb + rng.standard_normal(rgb.shape, dtype=np.float32) * profile.noise_sigma
    return np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
