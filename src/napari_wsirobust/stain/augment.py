"""Scanner-swapped views of tiles: re-render a tile as if it came from another scanner.

A *view* changes only technical properties, never the tissue: the tile is unmixed into
haematoxylin, eosin and residual optical densities with the Ruifrok-Johnston vectors, then
re-rendered through a randomly drawn "virtual scanner" (Beer-Lambert with rotated and rescaled stain
vectors, another glass colour, gamma, focus blur, sensor noise and JPEG compression). One virtual
scanner is drawn per slide and view, so all tiles of a slide shift together, the way a real scanner
shifts a whole slide. Ranges are those of typical inter-site H&E variation (cf. HED-jitter
augmentation, Tellez et al. 2019): stain vectors within ``max_rotation_deg``, concentrations x0.75-1.3,
glass 226-252 per channel, gamma 0.85-1.2, blur up to 0.7 µm, noise 1-4 grey levels, JPEG 60-95.

Views are deterministic: the same seed, slide and tile always give the same pixels, so their
embeddings can be cached like any others (:meth:`ScannerAugmentation.identity` goes into the key).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

from ..synthetic import EOSIN_OD, HEMATOXYLIN_OD

TileTransform = Callable[[np.ndarray, int, int], np.ndarray]
LN10 = float(np.log(10.0))
ALGORITHM_VERSION = 3  # bump whenever rendering changes: cached view features become stale


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _reference_basis() -> np.ndarray:
    """Rows: H, E and a residual direction orthogonal to both (3 x 3, invertible)."""
    h, e = _unit(np.array(HEMATOXYLIN_OD)), _unit(np.array(EOSIN_OD))
    return np.stack([h, e, _unit(np.cross(h, e))])


def _rotate_towards_random(v: np.ndarray, max_deg: float, rng: np.random.Generator) -> np.ndarray:
    """``v`` turned by up to ``max_deg`` degrees in a random direction, kept in the positive octant."""
    direction = rng.standard_normal(3)
    direction -= direction.dot(v) * v
    direction = _unit(direction)
    angle = np.deg2rad(rng.uniform(0.0, max_deg))
    out = np.cos(angle) * v + np.sin(angle) * direction
    return _unit(np.clip(out, 1e-3, None))


@dataclass(frozen=True)
class VirtualScanner:
    """Rendering parameters of one drawn scanner (per slide and view)."""

    hematoxylin_od: tuple[float, float, float]
    eosin_od: tuple[float, float, float]
    hematoxylin_scale: float
    eosin_scale: float
    background_rgb: tuple[float, float, float]
    gamma: float
    blur_sigma_um: float
    noise_sigma: float
    jpeg_quality: int


@dataclass(frozen=True)
class ScannerAugmentation:
    """Draws one :class:`VirtualScanner` per (slide, view) and applies it to tiles."""

    seed: int = 0
    view: int = 0
    max_rotation_deg: float = 8.0
    concentration_range: tuple[float, float] = (0.75, 1.3)
    background_range: tuple[float, float] = (226.0, 252.0)
    gamma_range: tuple[float, float] = (0.85, 1.2)
    max_blur_um: float = 0.7
    noise_range: tuple[float, float] = (1.0, 4.0)
    jpeg_range: tuple[int, int] = (60, 95)

    def identity(self) -> str:
        """Stable id of this augmentation and of the rendering code's version (part of the feature
        cache key)."""
        payload = json.dumps({**asdict(self), "algorithm": ALGORITHM_VERSION}, sort_keys=True)
        return "scanner-swap-" + hashlib.sha256(payload.encode()).hexdigest()[:12]

    def _rng(self, slide_key: str, *extra: int) -> np.random.Generator:
        digest = hashlib.sha256(f"{self.seed}/{self.view}/{slide_key}".encode()).digest()
        return np.random.default_rng([int.from_bytes(digest[:8], "little"), *extra])

    def scanner_for(self, slide_key: str) -> VirtualScanner:
        rng = self._rng(slide_key)
        basis = _reference_basis()
        h = _rotate_towards_random(basis[0], self.max_rotation_deg, rng)
        e = _rotate_towards_random(basis[1], self.max_rotation_deg, rng)
        lo, hi = self.concentration_range
        return VirtualScanner(
            hematoxylin_od=tuple(float(x) for x in h),
            eosin_od=tuple(float(x) for x in e),
            hematoxylin_scale=float(rng.uniform(lo, hi)),
            eosin_scale=float(rng.uniform(lo, hi)),
            background_rgb=tuple(float(x) for x in rng.uniform(*self.background_range, size=3)),
            gamma=float(rng.uniform(*self.gamma_range)),
            blur_sigma_um=float(rng.uniform(0.0, self.max_blur_um)),
            noise_sigma=float(rng.uniform(*self.noise_range)),
            jpeg_quality=int(rng.integers(self.jpeg_range[0], self.jpeg_range[1] + 1)),
        )

    def for_slide(
        self, slide_key: str, tile_mpp: float, glass_rgb: tuple[float, float, float] = (255.0, 255.0, 255.0)
    ) -> TileTransform:
        """The transform for every tile of one slide (``tile_mpp``: µm per pixel of the tiles;
        ``glass_rgb``: the slide's background colour, e.g. ``TissueMask.glass_rgb``)."""
        scanner = self.scanner_for(slide_key)

        def transform(tile: np.ndarray, row: int, col: int) -> np.ndarray:
            rng = self._rng(slide_key, 1, int(row), int(col))
            return render_with_scanner(tile, scanner, tile_mpp, rng, glass_rgb)

        return transform


def render_with_scanner(
    tile: np.ndarray,
    scanner: VirtualScanner,
    tile_mpp: float,
    rng: np.random.Generator,
    glass_rgb: tuple[float, float, float] = (255.0, 255.0, 255.0),
) -> np.ndarray:
    """Unmix an RGB uint8 tile into H/E/residual OD (against the slide's ``glass_rgb``) and
    re-render it through ``scanner``."""
    rgb = tile.astype(np.float32)
    glass = np.asarray(glass_rgb, np.float32)
    od = np.clip(-np.log10((rgb + 1.0) / (glass + 1.0)), 0.0, None)
    basis = _reference_basis()
    conc = od.reshape(-1, 3) @ np.linalg.inv(basis)  # (pixels, [H, E, residual])
    target = np.stack(
        [
            np.asarray(scanner.hematoxylin_od) * scanner.hematoxylin_scale,
            np.asarray(scanner.eosin_od) * scanner.eosin_scale,
            basis[2],
        ]
    )
    new_od = (conc @ target).reshape(od.shape).clip(0.0, None)
    out = np.asarray(scanner.background_rgb, np.float32) * np.exp(-LN10 * new_od)
    sigma = scanner.blur_sigma_um / tile_mpp
    if sigma > 0.05:
        out = ndimage.gaussian_filter(out, sigma=(sigma, sigma, 0), mode="nearest")
    out = 255.0 * np.power(np.clip(out / 255.0, 0.0, 1.0), 1.0 / scanner.gamma)
    out = out + rng.standard_normal(out.shape).astype(np.float32) * scanner.noise_sigma
    out8 = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(out8).save(buffer, format="JPEG", quality=scanner.jpeg_quality)
    return np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
