"""Bags of cached tile features for training and evaluating the MIL head, one per cohort slide."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..cohort import REFERENCE, CohortError, CohortRow, CohortTable
from ..features import ExtractConfig, slide_features
from ..progress import ProgressCallback
from ..stain import ScannerAugmentation
from ..tiling import TileGrid


@dataclass
class Bag:
    """One slide as a bag of tile features, with everything training and evaluation need."""

    row: CohortRow
    label: int  # index into the label names; -1 for a reference re-scan (never classified)
    site: int
    features: np.ndarray  # (N, D) float32
    grid: TileGrid
    views: list[np.ndarray] = field(default_factory=list)  # scanner-swapped views, each (N, D)
    tumour_fraction: np.ndarray | None = None  # (N,) ground-truth tumour fraction per tile
    tile_labels: np.ndarray | None = None  # (N,) label index of annotated tiles, -1 where not annotated

    @property
    def n_tiles(self) -> int:
        return len(self.features)


def tile_tumour_fraction(ground_truth_path: str, grid: TileGrid) -> np.ndarray:
    """Per-tile ground-truth tumour fraction of a synthetic slide."""
    from ..synthetic import read_ground_truth_file

    gt = read_ground_truth_file(ground_truth_path)
    w, h = grid.tile_size_level0
    return np.array([gt.tumour_fraction_in(x, y, x + w, y + h) for x, y in zip(grid.x0, grid.y0)], np.float32)


def load_bags(
    table: CohortTable,
    rows: list[CohortRow],
    extract: ExtractConfig,
    views: tuple[ScannerAugmentation, ...] | None = None,
    with_ground_truth: bool = True,
    progress: ProgressCallback | None = None,
) -> list[Bag]:
    """Bags for ``rows``: features from the cache (embedding what is missing; each slide read with
    its row's ``mpp`` when set), and those of the scanner-swapped ``views`` (default: ``extract.views``);
    ``progress`` gets each slide's stages.

    A slide without tissue tiles is refused with its name: it cannot be a training example."""
    views = extract.views if views is None else views
    bags: list[Bag] = []
    for r in rows:
        feats = slide_features(r.path, extract, (None, *views), mpp=r.mpp, progress=progress)
        assert feats is not None
        plain = feats[0]
        if len(plain.features) == 0:
            raise CohortError(f"{r.slide_id}: no tissue tiles found in {r.path}")
        fraction = None
        if with_ground_truth and r.ground_truth and Path(r.ground_truth).exists():
            fraction = tile_tumour_fraction(r.ground_truth, plain.grid)
        bags.append(
            Bag(
                row=r,
                label=-1 if r.split == REFERENCE else table.label_index(r.label),  # reference: unused
                site=table.site_names.index(r.site) if r.site in table.site_names else -1,
                features=plain.features,
                grid=plain.grid,
                views=[f.features for f in feats[1:]],
                tumour_fraction=fraction,
            )
        )
    return bags
