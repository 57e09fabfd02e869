"""On-disk feature cache keyed on everything that determines a tile's embedding.

Key = hash of (slide content identity, tile geometry: size, target µm/px, overlap, slide MPP and read
level, encoder name, weights identity and dimension, cache format, the colour mode when the slide is
read as sRGB, and the scanner-swapped view or the harmonisation reference when there is one). Scope
and minimum tissue fraction only select tiles, so they are not in the key: an entry holds every tile
embedded so far for that key and a later run embeds only the tiles it lacks; tiles left out because
they overlap damaged file tiles are kept in its excluded datasets, so they are not retried. Entries
are written atomically; one that cannot be read or lacks its completion flag (a process killed
mid-write, a truncated file) is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Generator
from pathlib import Path

import numpy as np

from ..encoders import TileEncoder
from ..io import WSI
from ..stain import Harmonisation, ScannerAugmentation
from ..tiling import TileGrid
from .h5 import FeatureFileError, FeatureSet, read_feature_h5, write_feature_h5
from .pipeline import EmbedProgress, embed_tiles
from .slide_prep import SlidePrepStore

CACHE_FORMAT = 1


def cache_key(
    slide: WSI,
    grid: TileGrid,
    encoder: TileEncoder,
    view: ScannerAugmentation | None = None,
    harmonise: Harmonisation | None = None,
) -> str:
    """Key of a slide's features; ``view`` (a scanner-swapped view) and ``harmonise`` (tiles re-rendered
    into a reference profile) each make it a separate entry."""
    info = encoder.info
    payload: dict[str, object] = {
        "format": CACHE_FORMAT,
        "slide": slide.content_id(),
        "geometry": grid.geometry_identity(),
        "encoder": [info.name, info.weights_id, info.embed_dim],
    }
    if slide.metadata.color != "as-scanned":
        payload["color"] = slide.metadata.color
    if view is not None:
        payload["view"] = view.identity()
    if harmonise is not None:
        payload["harmonise"] = harmonise.identity()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def default_cache_dir() -> Path:
    root = os.environ.get("WSIROBUST_CACHE_DIR")
    return Path(root) if root else Path.home() / ".cache" / "napari-wsirobust" / "features"


class FeatureCache:
    """Feature cache in ``root`` (default ``$WSIROBUST_CACHE_DIR`` or ~/.cache/...); ``prep`` keeps
    the slides' tissue masks and harmonisation plans beside it."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.prep = SlidePrepStore(self.root / "slides")

    def path_for(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.h5"

    def load(self, key: str) -> FeatureSet | None:
        """The entry for ``key``, or None; a damaged entry is removed (and reported)."""
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            return read_feature_h5(path, require_complete=True)
        except FeatureFileError as exc:
            warnings.warn(f"discarding damaged feature cache entry {path.name}: {exc}", stacklevel=2)
            path.unlink(missing_ok=True)
            return None

    def store(self, key: str, fs: FeatureSet) -> Path:
        return write_feature_h5(self.path_for(key), fs)

    def load_aligned(self, key: str, grid: TileGrid) -> np.ndarray | None:
        """Features of every tile of ``grid`` in grid order if the entry has them all, else None
        (NaN rows for tiles left out as unreadable)."""
        fs = self.load(key)
        fs = _without_exclusions(fs) if fs is not None else None
        if fs is None or _missing(fs, grid).any():
            return None
        return _align(fs, grid)

    def has_all(self, key: str, grid: TileGrid) -> bool:
        fs = self.load(key)
        fs = _without_exclusions(fs) if fs is not None else None
        return fs is not None and not _missing(fs, grid).any()

    def embed(
        self,
        slide: WSI,
        grid: TileGrid,
        encoder: TileEncoder,
        view: ScannerAugmentation | None = None,
        glass_rgb: tuple[float, float, float] = (255.0, 255.0, 255.0),
        harmonise: Harmonisation | None = None,
        **embed_kwargs: object,
    ) -> Generator[EmbedProgress, None, np.ndarray]:
        """Features of every tile of ``grid`` in grid order, embedding only the tiles the cache
        lacks (a generator like :func:`embed_tiles`). With ``view``, the tiles are embedded as that
        scanner-swapped view (unmixed against the slide's ``glass_rgb``) and cached under their own key;
        with ``harmonise``, as re-rendered into its reference profile (also under their own key)."""
        if view is not None and harmonise is not None:
            raise ValueError("scanner-swapped views of harmonised tiles are not supported")
        key = cache_key(slide, grid, encoder, view, harmonise)
        if harmonise is not None:
            embed_kwargs["transform"] = harmonise.for_slide(slide, self.prep.plan(slide, harmonise))
        if view is not None:
            embed_kwargs["transform"] = view.for_slide(
                slide.content_id(), float(grid.config.target_mpp), glass_rgb
            )
        cached = self.load(key)
        cached = _without_exclusions(cached) if cached is not None else None
        missing = _missing(cached, grid) if cached is not None else np.ones(len(grid), bool)
        sub = grid.subset(missing)
        new = np.zeros((0, encoder.spec.embed_dim), np.float32)
        if missing.any():
            new = yield from embed_tiles(slide, sub, encoder, **embed_kwargs)
        else:
            yield EmbedProgress(len(grid), len(grid), 0.0)
        if cached is None:
            merged = FeatureSet(new, sub.coords_level0, sub.rows, sub.cols, feature_attrs(grid, encoder))
        elif missing.any():
            merged = FeatureSet(
                np.concatenate([cached.features, new]),
                np.concatenate([cached.coords, sub.coords_level0]),
                np.concatenate([cached.rows, sub.rows]),
                np.concatenate([cached.cols, sub.cols]),
                feature_attrs(grid, encoder),
            )
        else:
            merged = cached
        if missing.any():
            self.store(key, _with_exclusions(merged))
        return _align(merged, grid)


def feature_attrs(grid: TileGrid, encoder: TileEncoder) -> dict[str, object]:
    return {
        "patch_size": grid.config.tile_size,
        "patch_size_level0": float(grid.tile_size_level0[0]),
        "level0_mpp": float(grid.mpp[0]),
        "target_mpp": grid.config.target_mpp,
        "encoder": encoder.info.name,
        "encoder_weights": encoder.info.weights_id,
        "embed_dim": encoder.info.embed_dim,
    }


def _with_exclusions(fs: FeatureSet) -> FeatureSet:
    """For storing: NaN rows (tiles not embedded: unreadable) move to the excluded datasets."""
    bad = np.isnan(fs.features).any(axis=1)
    if not bad.any() or fs.rows is None or fs.cols is None:
        return fs
    return FeatureSet(
        fs.features[~bad],
        fs.coords[~bad],
        fs.rows[~bad],
        fs.cols[~bad],
        fs.attrs,
        excluded_coords=fs.coords[bad],
        excluded_rows=fs.rows[bad],
        excluded_cols=fs.cols[bad],
    )


def _without_exclusions(fs: FeatureSet) -> FeatureSet:
    """For use: excluded tiles come back as NaN rows, so they count as known, not missing."""
    if not len(fs.excluded_coords) or fs.excluded_rows is None or fs.excluded_cols is None or fs.rows is None:
        return fs
    nan = np.full((len(fs.excluded_coords), fs.features.shape[1]), np.nan, np.float32)
    return FeatureSet(
        np.concatenate([fs.features, nan]),
        np.concatenate([fs.coords, fs.excluded_coords]),
        np.concatenate([fs.rows, fs.excluded_rows]),
        np.concatenate([fs.cols, fs.excluded_cols]),
        fs.attrs,
    )


def _index(fs: FeatureSet) -> dict[tuple[int, int], int]:
    return {(int(r), int(c)): i for i, (r, c) in enumerate(zip(fs.rows, fs.cols))}


def _missing(fs: FeatureSet | None, grid: TileGrid) -> np.ndarray:
    if fs is None or fs.rows is None:
        return np.ones(len(grid), bool)
    index = _index(fs)
    return np.array([(int(r), int(c)) not in index for r, c in zip(grid.rows, grid.cols)], bool)


def _align(fs: FeatureSet, grid: TileGrid) -> np.ndarray:
    index = _index(fs)
    order = [index[(int(r), int(c))] for r, c in zip(grid.rows, grid.cols)]
    return fs.features[order] if order else np.zeros((0, fs.features.shape[1]), np.float32)
