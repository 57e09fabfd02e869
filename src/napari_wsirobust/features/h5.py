"""The feature-file layout used by CLAM and TRIDENT: HDF5 with ``features`` (N, D) and ``coords``
(N, 2) level-0 (x, y) of each tile's top-left corner. We add ``rows``/``cols`` (grid indices) and
attributes, and ``excluded_coords`` / ``excluded_rows`` / ``excluded_cols`` for tiles left out because
they overlap damaged file tiles; readers that only know ``features`` and ``coords`` still work, and
files from those tools load here (rows/cols are derived from the coordinates when absent)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import WsiRobustError

COMPLETE_ATTR = "wsirobust_complete"


class FeatureFileError(WsiRobustError, ValueError):
    """A feature file is unreadable, truncated or lacks the expected datasets."""


@dataclass
class FeatureSet:
    """Tile embeddings of one slide with their coordinates."""

    features: np.ndarray  # (N, D) float32
    coords: np.ndarray  # (N, 2) int64 level-0 (x, y)
    rows: np.ndarray | None = None
    cols: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    # tiles not embedded because they overlap damaged file tiles: level-0 (x, y) and grid indices
    excluded_coords: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    excluded_rows: np.ndarray | None = None
    excluded_cols: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.features = np.asarray(self.features, dtype=np.float32)
        self.coords = np.asarray(self.coords, dtype=np.int64)
        self.excluded_coords = np.asarray(self.excluded_coords, dtype=np.int64).reshape(-1, 2)
        if self.features.ndim != 2 or self.coords.shape != (len(self.features), 2):
            raise FeatureFileError(
                f"features {self.features.shape} and coords {self.coords.shape} do not match"
            )


def write_feature_h5(path: str | os.PathLike[str], fs: FeatureSet) -> Path:
    """Write atomically (temporary name, then rename); the completion flag is set last."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    with h5py.File(tmp, "w") as f:
        f.create_dataset("features", data=fs.features)
        coords = f.create_dataset("coords", data=fs.coords)
        if fs.rows is not None and fs.cols is not None:
            f.create_dataset("rows", data=np.asarray(fs.rows, np.int32))
            f.create_dataset("cols", data=np.asarray(fs.cols, np.int32))
        excluded = f.create_dataset("excluded_coords", data=fs.excluded_coords)
        excluded.attrs["reason"] = "overlaps a damaged file tile"
        if fs.excluded_rows is not None and fs.excluded_cols is not None:
            f.create_dataset("excluded_rows", data=np.asarray(fs.excluded_rows, np.int32))
            f.create_dataset("excluded_cols", data=np.asarray(fs.excluded_cols, np.int32))
        for key, value in fs.attrs.items():
            target = coords if key.startswith("patch_") or key.startswith("level0_") else f
            target.attrs[key] = value
        f.attrs[COMPLETE_ATTR] = True
    os.replace(tmp, path)
    return path


def read_feature_h5(path: str | os.PathLike[str], require_complete: bool = False) -> FeatureSet:
    """Read a CLAM/TRIDENT-style feature file (``features`` may be (N, D) or (1, N, D))."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            if require_complete and not f.attrs.get(COMPLETE_ATTR, False):
                raise FeatureFileError(f"{path.name}: incomplete feature file")
            if "features" not in f or "coords" not in f:
                raise FeatureFileError(
                    f"{path.name}: expected datasets 'features' and 'coords', found {sorted(f)}"
                )
            features = np.asarray(f["features"])
            coords = np.asarray(f["coords"])
            attrs = {**dict(f["coords"].attrs), **{k: v for k, v in f.attrs.items() if k != COMPLETE_ATTR}}
            rows = np.asarray(f["rows"]) if "rows" in f else None
            cols = np.asarray(f["cols"]) if "cols" in f else None
            excluded = np.asarray(f["excluded_coords"]) if "excluded_coords" in f else np.zeros((0, 2))
            ex_rows = np.asarray(f["excluded_rows"]) if "excluded_rows" in f else None
            ex_cols = np.asarray(f["excluded_cols"]) if "excluded_cols" in f else None
    except FeatureFileError:
        raise
    except (OSError, KeyError) as exc:
        raise FeatureFileError(f"{path.name}: not a readable HDF5 feature file ({exc})") from exc
    if features.ndim == 3 and features.shape[0] == 1:
        features = features[0]
    if coords.ndim == 3 and coords.shape[0] == 1:
        coords = coords[0]
    if rows is None and "patch_size_level0" in attrs and len(coords):
        step = float(np.asarray(attrs["patch_size_level0"]).ravel()[0])
        cols, rows = (
            np.rint(coords[:, 0] / step).astype(np.int32),
            np.rint(coords[:, 1] / step).astype(np.int32),
        )
    return FeatureSet(
        features=features,
        coords=coords,
        rows=rows,
        cols=cols,
        attrs=attrs,
        excluded_coords=excluded,
        excluded_rows=ex_rows,
        excluded_cols=ex_cols,
    )
