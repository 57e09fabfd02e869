"""Colour/stain profile of a slide or a scanner from its tissue pixels (no Qt).

- Background (glass) tint I0: per-channel median of the brightest, least saturated pixels.
- Stain vectors by Macenko et al. (2009): optical density OD = -log10(I / I0) of tissue pixels
  (||OD|| above ``od_threshold``); the plane of the two leading eigenvectors of the OD covariance;
  the extreme angles (``angle_percentile`` and 100 - it) of the projected pixels give the two stain
  directions; haematoxylin is the one absorbing more red (its OD has the larger red component).
- Concentrations: least-squares unmixing with those vectors; their 50th and 99th percentiles.
- Sharpness: variance of the Laplacian of the grey image over tissue (higher = crisper focus).
- JPEG quality: from the quantisation tables in the file (:mod:`.jpeg`), when the tiles are JPEG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from ..errors import WsiRobustError
from ..tiling import percentile_of_histogram
from .jpeg import jpeg_quality_of_slide

if TYPE_CHECKING:
    from ..io import WSI
    from ..tiling import TileGrid


@dataclass(frozen=True)
class StainProfile:
    hematoxylin_od: tuple[float, float, float]
    eosin_od: tuple[float, float, float]
    background_rgb: tuple[float, float, float]
    concentration_p50: tuple[float, float]  # (H, E)
    concentration_p99: tuple[float, float]
    sharpness: float
    n_pixels: int
    jpeg_quality: int | None = None  # of the slide's tiles, from the file's quantisation tables

    @property
    def stain_matrix(self) -> np.ndarray:
        return np.array([self.hematoxylin_od, self.eosin_od], dtype=np.float64)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def angle_degrees(a: np.ndarray | tuple[float, ...], b: np.ndarray | tuple[float, ...]) -> float:
    """Angle between two vectors, in degrees."""
    u = np.asarray(a, dtype=np.float64) / np.linalg.norm(a)
    v = np.asarray(b, dtype=np.float64) / np.linalg.norm(b)
    return float(np.degrees(np.arccos(np.clip(u @ v, -1.0, 1.0))))


def estimate_background(rgb: np.ndarray) -> np.ndarray:
    """Glass colour: median of the 2 % brightest pixels among the least saturated half."""
    px = np.asarray(rgb).reshape(-1, 3)
    if px.dtype != np.uint8:
        px = px.astype(np.float64)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]  # integer arithmetic for 8-bit pixels: the same figures, faster
    saturation = np.maximum(np.maximum(r, g), b) - np.minimum(np.minimum(r, g), b)
    calm = px[saturation <= _percentile(saturation, 50)]
    brightness = calm.sum(axis=1, dtype=np.float64 if calm.dtype.kind == "f" else np.int64)
    bright = calm[brightness >= _percentile(brightness, 98)]
    return np.median(bright.astype(np.float64), axis=0)


def _percentile(values: np.ndarray, q: float) -> float:
    """``np.percentile``; integer values through their histogram (the same figure, no sort)."""
    if values.dtype.kind in "ui" and len(values):
        return percentile_of_histogram(np.bincount(values), q)
    return float(np.percentile(values, q))


def tissue_sharpness(rgb: np.ndarray, tissue: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image over the ``tissue`` pixels (higher = crisper)."""
    px = np.asarray(rgb, dtype=np.float64)
    return grey_sharpness((px[..., 0], px[..., 1], px[..., 2]), tissue)


def grey_sharpness(channels: tuple[np.ndarray, np.ndarray, np.ndarray], tissue: np.ndarray) -> float:
    """:func:`tissue_sharpness` of an image given as its three float channels (grey = their mean,
    summed in channel order: the same figures as averaging an (H, W, 3) array)."""
    red, green, blue = channels
    grey = (red + green + blue) / 3
    return float(ndimage.laplace(grey)[tissue].var())


def optical_density(rgb: np.ndarray, background: np.ndarray | tuple[float, ...]) -> np.ndarray:
    """OD = -log10((I + 1) / (I0 + 1)) per channel of RGB pixels (any leading shape, last axis >= 3);
    8-bit pixels go through one 256-entry table per channel (the same figures)."""
    background = np.asarray(background, dtype=np.float64)
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        levels = np.arange(256, dtype=np.float64) + 1.0
        tables = [-np.log10(levels / (background[c] + 1.0)) for c in range(3)]
        return np.stack([tables[c][rgb[..., c]] for c in range(3)], axis=-1)
    px = rgb.astype(np.float64)[..., :3]
    return -np.log10(np.clip(px + 1.0, 1.0, None) / (background + 1.0))


def tissue_pixels(
    rgb: np.ndarray, background: np.ndarray | tuple[float, ...], od_threshold: float = 0.15
) -> np.ndarray:
    """(H, W) mask of pixels whose optical density against ``background`` exceeds ``od_threshold``."""
    return np.linalg.norm(optical_density(rgb, background), axis=-1) > od_threshold


def estimate_stain_profile(
    rgb: np.ndarray,
    background: np.ndarray | None = None,
    od_threshold: float = 0.15,
    angle_percentile: float = 1.0,
    max_pixels: int = 400_000,
    seed: int = 0,
) -> StainProfile:
    """The profile of an (H, W, 3) uint8 RGB image (a region, or tiles stacked into one image)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
    i0 = estimate_background(rgb) if background is None else np.asarray(background, dtype=np.float64)
    od = optical_density(rgb.reshape(-1, 3), i0)
    tissue = np.linalg.norm(od, axis=1) > od_threshold
    od_tissue = od[tissue]
    if len(od_tissue) < 100:
        raise ProfileError(f"only {len(od_tissue)} tissue pixels: not enough to estimate stain vectors")
    if len(od_tissue) > max_pixels:
        od_tissue = od_tissue[np.random.default_rng(seed).choice(len(od_tissue), max_pixels, replace=False)]
    _, vectors = np.linalg.eigh(np.cov(od_tissue.T))
    plane = vectors[:, [2, 1]]  # the two leading eigenvectors
    plane *= np.sign(plane.sum(axis=0, keepdims=True) + 1e-12)  # point into positive OD
    proj = od_tissue @ plane
    angles = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(angles, [angle_percentile, 100 - angle_percentile])
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    v1, v2 = (v / np.linalg.norm(v) for v in (v1, v2))
    h, e = (v1, v2) if v1[0] > v2[0] else (v2, v1)
    conc, *_ = np.linalg.lstsq(np.stack([h, e]).T, od_tissue.T, rcond=None)
    sharpness = tissue_sharpness(rgb, tissue.reshape(rgb.shape[:2]))
    return StainProfile(
        hematoxylin_od=tuple(float(v) for v in h),  # type: ignore[arg-type]
        eosin_od=tuple(float(v) for v in e),  # type: ignore[arg-type]
        background_rgb=tuple(float(v) for v in i0),  # type: ignore[arg-type]
        concentration_p50=tuple(float(v) for v in np.percentile(conc, 50, axis=1)),  # type: ignore[arg-type]
        concentration_p99=tuple(float(v) for v in np.percentile(conc, 99, axis=1)),  # type: ignore[arg-type]
        sharpness=sharpness,
        n_pixels=int(tissue.sum()),
    )


def estimate_slide_profile(
    path: str, n_tiles: int = 48, seed: int = 0, mpp: float | tuple[float, float] | None = None
) -> StainProfile:
    """Profile of one slide: glass tint from its low-resolution overview, stains and sharpness from
    up to ``n_tiles`` random tissue tiles at the default tiling resolution. ``mpp``: the pixel size
    (µm/px) replacing the file's, e.g. for a slide without one."""
    from ..io import open_slide

    with open_slide(path, mpp=mpp) as slide:
        return estimate_open_slide_profile(slide, n_tiles, seed)


def estimate_open_slide_profile(
    slide: WSI, n_tiles: int = 48, seed: int = 0, grid: TileGrid | None = None
) -> StainProfile:
    """:func:`estimate_slide_profile` of a slide already open (with its pixel size override, if any);
    ``grid``: its whole-slide tissue tiles at the default tiling, when already made."""
    from ..tiling import (
        TilingConfig,
        TissueMaskConfig,
        detect_tissue,
        make_tile_grid,
        read_overview,
        read_readable_tiles,
    )

    path = str(slide.path)
    overview, _ = read_overview(slide, TissueMaskConfig())
    background = estimate_background(np.asarray(overview)[..., :3])
    if grid is None:
        grid = make_tile_grid(slide, TilingConfig(), tissue=detect_tissue(slide))
    if len(grid) == 0:
        raise ProfileError(f"{path}: no tissue tiles to estimate a stain profile from")
    picks = np.random.default_rng(seed).permutation(len(grid))[:n_tiles]
    readable = read_readable_tiles(slide, grid, sorted(picks))
    if not readable:
        raise ProfileError(f"{path}: every sampled tissue tile overlaps damaged file tiles")
    tiles = np.concatenate([t[..., :3] for t in readable], axis=0)
    profile = estimate_stain_profile(tiles, background=background, seed=seed)
    quality = jpeg_quality_of_slide(path)
    return replace(profile, jpeg_quality=quality.quality if quality is not None else None)


def combine_profiles(profiles: list[StainProfile]) -> StainProfile:
    """One profile for a site from its slides' profiles: mean unit stain vectors, medians otherwise."""
    if not profiles:
        raise ProfileError("no slide profiles to combine")
    qualities = [p.jpeg_quality for p in profiles if p.jpeg_quality is not None]

    def unit_mean(vectors: list[tuple[float, float, float]]) -> tuple[float, float, float]:
        v = np.mean(np.asarray(vectors, dtype=np.float64), axis=0)
        return tuple(float(x) for x in v / np.linalg.norm(v))  # type: ignore[return-value]

    def median(values: list[tuple[float, ...]]) -> tuple[float, ...]:
        return tuple(float(x) for x in np.median(np.asarray(values, dtype=np.float64), axis=0))

    return StainProfile(
        hematoxylin_od=unit_mean([p.hematoxylin_od for p in profiles]),
        eosin_od=unit_mean([p.eosin_od for p in profiles]),
        background_rgb=median([p.background_rgb for p in profiles]),  # type: ignore[arg-type]
        concentration_p50=median([p.concentration_p50 for p in profiles]),  # type: ignore[arg-type]
        concentration_p99=median([p.concentration_p99 for p in profiles]),  # type: ignore[arg-type]
        sharpness=float(np.median([p.sharpness for p in profiles])),
        n_pixels=int(sum(p.n_pixels for p in profiles)),
        jpeg_quality=int(np.median(qualities)) if qualities else None,
    )


class ProfileError(WsiRobustError, ValueError):
    """A slide whose colour profile cannot be estimated; the message names it and its site."""


def estimate_site_profiles(
    slides_by_site: Mapping[str, Sequence[str]],
    n_tiles: int = 48,
    slide_mpp: Mapping[str, float] | None = None,
) -> dict[str, StainProfile]:
    """One profile per site from its slides (each slide profiled, then :func:`combine_profiles`;
    ``slide_mpp``: pixel size overrides in µm/px by slide path, other slides use their files').
    Raises :class:`ProfileError` naming the first slide that cannot be profiled (unreadable, no
    tissue, too few stained pixels)."""
    slide_mpp = slide_mpp or {}
    profiles: dict[str, StainProfile] = {}
    for site, paths in sorted(slides_by_site.items()):
        per_slide = []
        for i, path in enumerate(paths):
            try:
                mpp = slide_mpp.get(str(path))
                per_slide.append(estimate_slide_profile(str(path), n_tiles, seed=i, mpp=mpp))
            except (OSError, ValueError) as exc:
                raise ProfileError(
                    f"cannot estimate the colour profile of {Path(str(path)).name} (site {site}): {exc}"
                ) from exc
        if per_slide:
            profiles[site] = combine_profiles(per_slide)
    return profiles
