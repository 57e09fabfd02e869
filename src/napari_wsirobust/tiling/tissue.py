"""Tissue detection on a low-resolution level.

Tissue is what is both coloured and absorbing: saturation above an Otsu threshold (floored, so a
slide with almost no tissue does not split its glass noise in two) *and* optical density, measured
against the slide's own glass colour, above a floor. Black ink, dust and green/blue pen marks are
removed by value and hue; small specks are dropped and small holes filled (sizes in µm² when the MPP
is known).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage import color, filters, morphology

from ..io import WSI


@dataclass(frozen=True)
class TissueMaskConfig:
    """Parameters of :func:`detect_tissue`.

    mask_mpp : resolution of the mask in µm/px (slides without MPP use ``max_side`` instead).
    max_side : longest side of the mask in pixels when the MPP is unknown.
    min_saturation, min_od : floors of the saturation (0-1) and mean optical density thresholds.
    max_dark_value : pixels darker than this value (0-1) are ink or debris, not tissue.
    exclude_pen : drop saturated green/blue pixels (hue 70-230 degrees), the colours of pen marks.
    min_object_um2, max_hole_um2 : smallest tissue piece kept, largest hole filled.
    """

    mask_mpp: float = 8.0
    max_side: int = 2048
    min_saturation: float = 0.07
    min_od: float = 0.04
    max_dark_value: float = 0.12
    exclude_pen: bool = True
    min_object_um2: float = 3000.0
    max_hole_um2: float = 5000.0


@dataclass(frozen=True)
class TissueMask:
    """Boolean tissue mask; pixel (i, j) covers level-0 pixels
    ``[j*dx, (j+1)*dx) x [i*dy, (i+1)*dy)`` with ``downsample = (dx, dy)``."""

    mask: np.ndarray
    downsample: tuple[float, float]
    saturation_threshold: float
    glass_rgb: tuple[float, float, float] = (255.0, 255.0, 255.0)  # the slide's background colour

    @property
    def tissue_fraction(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def fraction_in(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Tissue fraction of the level-0 rectangle, from the mask pixels it overlaps (area-weighted)."""
        dx, dy = self.downsample
        h, w = self.mask.shape
        ja, jb = x0 / dx, x1 / dx
        ia, ib = y0 / dy, y1 / dy
        i0, i1 = max(int(np.floor(ia)), 0), min(int(np.ceil(ib)), h)
        j0, j1 = max(int(np.floor(ja)), 0), min(int(np.ceil(jb)), w)
        if i0 >= i1 or j0 >= j1:
            return 0.0
        wy = np.minimum(np.arange(i0, i1) + 1, ib) - np.maximum(np.arange(i0, i1), ia)
        wx = np.minimum(np.arange(j0, j1) + 1, jb) - np.maximum(np.arange(j0, j1), ja)
        weights = np.outer(wy, wx)
        total = (ib - ia) * (jb - ja)
        return float((self.mask[i0:i1, j0:j1] * weights).sum() / total) if total > 0 else 0.0

    def fractions_in(self, x0: np.ndarray, y0: np.ndarray, width: float, height: float) -> np.ndarray:
        """:meth:`fraction_in` of many level-0 rectangles of one size at once (equal to it up to
        rounding in the last bits: the sums are taken in another order)."""
        x0, y0 = np.asarray(x0, np.float64), np.asarray(y0, np.float64)
        dx, dy = self.downsample
        if x0.size == 0 or width <= 0 or height <= 0:
            return np.zeros(x0.shape, np.float64)
        ky, kx = int(np.ceil(height / dy)) + 1, int(np.ceil(width / dx)) + 1
        padded = np.pad(self.mask, ((ky, ky), (kx, kx)))
        ia, ja = y0 / dy, x0 / dx
        rows = np.floor(ia).astype(np.int64)[:, None] + np.arange(ky)  # (N, ky) mask row indices
        cols = np.floor(ja).astype(np.int64)[:, None] + np.arange(kx)
        wy = np.clip(
            np.minimum(rows + 1, (ia + height / dy)[:, None]) - np.maximum(rows, ia[:, None]), 0, None
        )
        wx = np.clip(
            np.minimum(cols + 1, (ja + width / dx)[:, None]) - np.maximum(cols, ja[:, None]), 0, None
        )
        rows = np.clip(rows + ky, 0, padded.shape[0] - 1)  # outside the mask: the zero padding
        cols = np.clip(cols + kx, 0, padded.shape[1] - 1)
        windows = padded[rows[:, :, None], cols[:, None, :]].astype(np.float64)  # (N, ky, kx)
        return np.einsum("nij,ni,nj->n", windows, wy, wx) / ((height / dy) * (width / dx))


def read_overview(slide: WSI, config: TissueMaskConfig) -> tuple[np.ndarray, tuple[float, float]]:
    """An RGB overview close to the mask resolution, and its (x, y) downsample from level 0."""
    width, height = slide.dimensions
    mpp = slide.mpp
    wanted = config.mask_mpp / max(mpp) if mpp is not None else max(width, height) / config.max_side
    wanted = max(wanted, 1.0)
    level = slide.best_level_for_downsample(wanted)
    image = np.asarray(slide.arrays[level])
    dx, dy = slide.level_downsample(level)
    factor = max(1, int(np.floor(wanted / max(dx, dy))))
    if factor > 1:  # block-average the rest of the way
        h, w = image.shape[0] // factor * factor, image.shape[1] // factor * factor
        image = (
            image[:h, :w]
            .reshape(h // factor, factor, w // factor, factor, -1)
            .mean(axis=(1, 3))
            .astype(np.uint8)
        )
    return image, (dx * factor, dy * factor)


def tissue_mask_from_rgb(
    rgb: np.ndarray, pixel_area_um2: float | None, config: TissueMaskConfig = TissueMaskConfig()
) -> tuple[np.ndarray, float]:
    """Tissue mask of an RGB overview; returns the mask and the saturation threshold used."""
    mask, threshold, _ = _tissue_mask(rgb, pixel_area_um2, config)
    return mask, threshold


def _tissue_mask(
    rgb: np.ndarray, pixel_area_um2: float | None, config: TissueMaskConfig
) -> tuple[np.ndarray, float, np.ndarray]:
    """Mask, saturation threshold and glass RGB of an overview."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"tissue detection needs an RGB image, got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"tissue detection needs an 8-bit RGB image, got {rgb.dtype}")
    rgb = rgb[..., :3]
    sat, value = _saturation_value(rgb)
    # Ink, debris and pen marks are removed first so they cannot drag the thresholds.
    artefact = _artefacts(rgb, sat, value, config)
    glass = _glass_from(rgb, artefact)
    od = _mean_optical_density(rgb, glass)
    try:
        otsu = float(filters.threshold_otsu(sat[~artefact])) if (~artefact).any() else 1.0
    except ValueError:  # constant image
        otsu = 1.0
    threshold = max(otsu, config.min_saturation)
    mask = (sat > threshold) & (od > config.min_od) & ~artefact
    area = pixel_area_um2 if pixel_area_um2 else None
    min_object = int(round(config.min_object_um2 / area)) if area else 16
    max_hole = int(round(config.max_hole_um2 / area)) if area else 16
    mask = ndimage.binary_closing(mask, structure=np.ones((3, 3), bool), iterations=1)
    mask = morphology.remove_small_objects(mask, max_size=max(min_object, 1))
    mask = morphology.remove_small_holes(mask, max_size=max(max_hole, 1))
    mask &= ~artefact  # hole filling must not bring ink back
    return mask, threshold, glass


@functools.cache
def _hsv_tables() -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation by (max, min) channel value and HSV value by max, each computed by
    scikit-image's ``rgb2hsv`` itself: looking them up gives its results exactly, without
    converting every pixel of the overview."""
    levels = np.arange(256, dtype=np.uint8)
    hi, lo = np.meshgrid(levels, levels, indexing="ij")
    pairs = np.stack([hi, lo, lo], axis=-1)
    saturation = color.rgb2hsv(pairs)[..., 1]
    value = color.rgb2hsv(np.stack([levels] * 3, axis=-1)[None])[0, :, 2]
    return saturation, value


def _saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value (0-1) of a uint8 RGB image, equal to ``rgb2hsv``'s."""
    saturation, value = _hsv_tables()
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hi, lo = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    return saturation[hi, lo], value[hi]


def _mean_optical_density(rgb: np.ndarray, glass: np.ndarray) -> np.ndarray:
    """Mean over channels of OD = -log10(I / glass), floored at 0 (I clipped to 1..255), per pixel
    (each channel through a 256-entry table; summed in channel order and divided by 3, as ``mean``)."""
    levels = np.clip(np.arange(256, dtype=np.float64), 1, 255)
    tables = [np.clip(-np.log10(levels / glass[c]), 0, None) for c in range(3)]
    total = tables[0][rgb[..., 0]]
    total += tables[1][rgb[..., 1]]
    total += tables[2][rgb[..., 2]]
    return total / 3


def _artefacts(
    rgb: np.ndarray, saturation: np.ndarray, value: np.ndarray, config: TissueMaskConfig
) -> np.ndarray:
    """Ink and debris (too dark) and, optionally, pen marks (saturated green/blue)."""
    artefact = value <= config.max_dark_value
    if config.exclude_pen:
        # a hue within 70-230 degrees needs green above red (red the largest: -60..60; blue the
        # largest with red >= green: 240..300; red = green the largest: 60), so only those pixels
        # are converted
        candidates = (saturation > 0.25) & (rgb[..., 1] > rgb[..., 0])
        hue = color.rgb2hsv(rgb[candidates])[..., 0] * 360.0 if candidates.any() else np.zeros(0)
        artefact[candidates] |= (hue > 70) & (hue < 230)
    return artefact


def _glass_from(rgb: np.ndarray, artefact: np.ndarray) -> np.ndarray:
    """Per-channel 95th percentile of the non-artefact pixels (all pixels when every one is an
    artefact), from each channel's 256-bin histogram: ``np.percentile``'s figures without gathering
    or sorting the pixels."""
    keep = ~artefact if (~artefact).any() else np.ones(artefact.shape, bool)
    offset = np.where(keep, 0, 256).astype(np.uint16)  # artefact pixels counted in bins 256..511
    glass = []
    for c in range(3):
        counts = np.bincount((rgb[..., c] + offset).ravel(), minlength=512)[:256]
        glass.append(percentile_of_histogram(counts, 95.0))
    return np.asarray(glass, dtype=np.float64).clip(1, 255)


def percentile_of_histogram(counts: np.ndarray, q: float) -> float:
    """``np.percentile(values, q)`` (linear method) of the integer values whose histogram is
    ``counts`` (``counts[v]`` values equal to v), with the same floating-point steps."""
    n = int(counts.sum())
    if n == 0:
        raise ValueError("percentile of an empty histogram")
    fraction = np.float64(q) / 100
    virtual = (n - 1) * fraction  # numpy's index of the linear method, and its bounds below
    previous = n - 1 if virtual >= n - 1 else int(np.floor(virtual))
    below = np.cumsum(counts)  # below[v]: how many values are <= v

    def order_statistic(k: int) -> np.float64:
        return np.float64(np.searchsorted(below, min(max(k, 0), n - 1), side="right"))

    low, high = order_statistic(previous), order_statistic(previous if previous == n - 1 else previous + 1)
    gamma = np.float64(virtual - previous)
    diff = high - low
    return float(high - diff * (1 - gamma) if gamma >= 0.5 else low + diff * gamma)


def detect_tissue(slide: WSI, config: TissueMaskConfig = TissueMaskConfig()) -> TissueMask:
    """Tissue mask of ``slide`` from one low-resolution read (see module docstring)."""
    slide.require_rgb()
    overview, downsample = read_overview(slide, config)
    mpp = slide.mpp
    area = downsample[0] * mpp[0] * downsample[1] * mpp[1] if mpp is not None else None
    mask, threshold, glass = _tissue_mask(overview, area, config)
    return TissueMask(
        mask=mask,
        downsample=downsample,
        saturation_threshold=threshold,
        glass_rgb=(float(glass[0]), float(glass[1]), float(glass[2])),
    )
