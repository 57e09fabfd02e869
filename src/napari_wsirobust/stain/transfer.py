"""Scanner swap: re-render a tile as if scanned with another colour profile (no Qt).

Stain-space transfer: the tile's optical density OD = -log10(I / I0_source) is unmixed with the
source profile's stain vectors into haematoxylin and eosin concentrations, each rescaled so its 99th
percentile matches the target's (the intensity of staining), and rendered back with the target's
stain vectors and glass tint, I = I0_target * 10^(-(c_H s_H + c_E s_E)). Optionally a Gaussian blur
(focus) and JPEG re-compression imitate the target's optics and file format.
"""

from __future__ import annotations

import io

import numpy as np
from scipy import ndimage

from .profile import StainProfile, optical_density, tissue_pixels, tissue_sharpness


def transfer_tile(
    rgb: np.ndarray,
    source: StainProfile,
    target: StainProfile,
    blur_sigma_px: float = 0.0,
    jpeg_quality: int | None = None,
) -> np.ndarray:
    """(H, W, 3) uint8 tile re-rendered from ``source``'s profile into ``target``'s."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] < 3:
        raise ValueError(f"expected an (H, W, 3) RGB tile, got shape {rgb.shape}")
    od = optical_density(rgb[..., :3].reshape(-1, 3), source.background_rgb)
    conc = od @ np.linalg.pinv(source.stain_matrix)  # (N, 2): least-squares unmixing
    scale = np.asarray(target.concentration_p99) / np.maximum(np.asarray(source.concentration_p99), 1e-6)
    conc = np.clip(conc, 0.0, None) * scale
    od_target = conc @ target.stain_matrix
    i0_tgt = np.asarray(target.background_rgb, dtype=np.float64)
    out = (i0_tgt + 1.0) * np.power(10.0, -od_target) - 1.0
    image = out.reshape(rgb.shape[:2] + (3,))
    if blur_sigma_px > 0:
        image = np.stack([ndimage.gaussian_filter(image[..., c], blur_sigma_px) for c in range(3)], axis=-1)
    image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if jpeg_quality is not None:
        image = jpeg_roundtrip(image, jpeg_quality)
    return image


def matching_blur_sigma(
    tiles: np.ndarray, source: StainProfile, target: StainProfile, max_sigma: float = 3.0
) -> float:
    """Gaussian blur (pixels) that brings ``tiles`` (RGB, source profile), once re-coloured to the
    target, down to the target profile's sharpness; 0 when they are already no sharper (blur cannot
    be undone). Sharpness falls monotonically with blur, so the width is found by bisection."""
    moved = transfer_tile(tiles, source, target).astype(np.float64)
    tissue = tissue_pixels(moved, target.background_rgb)
    if not tissue.any() or tissue_sharpness(moved, tissue) <= target.sharpness:
        return 0.0

    # The blur is linear, so blurring the grey image equals the grey of the blurred channels (to
    # rounding, 1e-13 relative): one filter per step instead of three, the same bisection.
    grey = (moved[..., 0] + moved[..., 1] + moved[..., 2]) / 3

    def blurred_sharpness(sigma: float) -> float:
        return float(ndimage.laplace(ndimage.gaussian_filter(grey, sigma))[tissue].var())

    lo, hi = 0.0, max_sigma
    if blurred_sharpness(hi) > target.sharpness:
        return hi
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if blurred_sharpness(mid) > target.sharpness else (lo, mid)
    return (lo + hi) / 2


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode with JPEG at ``quality`` (1-100)."""
    from PIL import Image

    if not 1 <= quality <= 100:
        raise ValueError(f"JPEG quality must be within 1..100, got {quality}")
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"))
