"""Cohort robustness metrics of an encoder + MIL head (no Qt).

On bags of one cohort (slides with label, site, patient):

- croma's RI, MaRI and CRoMa with their worst-10 % tails (see :mod:`.croma_metrics`) of tile
  embeddings (a random subsample; neighbours from the same slide excluded) and of slide embeddings
  (mean of the slide's tiles; same-patient neighbours excluded),
- site predictability (:func:`~napari_wsirobust.mil.metrics.site_predictability`) from (a) the slide
  embeddings and (b) the head's slide representation: a robust head should be near chance, which
  with few slides is a band: ``probe_chance`` is the 95th percentile of the probe on the head's
  representation with the sites shuffled (:func:`~napari_wsirobust.mil.metrics.site_probe_chance`),
- site share of variance (:func:`~napari_wsirobust.mil.metrics.site_variance_share`, eta^2) of the same
  two: how much of each representation is the site, which the probe (saturating at 1) does not tell,
- AUC, balanced accuracy and ECE overall and per site,
- a 2-D PCA projection of the slide embeddings, and a UMAP (McInnes et al. 2018) when ``umap-learn`` is
  installed (the ``umap`` extra), coloured by site and by label in the plots.
"""

from __future__ import annotations

import json
import os
from collections.abc import Generator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_csv, atomic_write_text
from ..errors import InputError
from ..mil import (
    Bag,
    TrainedHead,
    auc_ovr,
    balanced_accuracy,
    expected_calibration_error,
    site_predictability,
    site_probe_chance,
    site_variance_share,
)
from ..progress import FINISHED, ProgressCallback, report
from .croma_metrics import TABLE_COLUMNS, RobustnessMetrics, robustness_metrics, table_rows

MAX_TILES = 4000


@dataclass
class SiteMetrics:
    site: str
    n_slides: int
    auc: float
    balanced_accuracy: float
    ece: float


@dataclass
class CohortDiagnostics:
    n_slides: int
    n_tiles: int
    sites: list[str]
    label_names: list[str]
    tile_robustness: RobustnessMetrics  # RI, MaRI, CRoMa of the tile embeddings
    slide_robustness: RobustnessMetrics  # the same of the slide embeddings
    site_predictability_embeddings: float
    site_predictability_head: float
    site_variance_embeddings: float  # between-site share of the slide embeddings' variance (eta^2)
    site_variance_head: float  # the same for the head's slide representation
    chance: float
    probe_chance: float  # 95th percentile of the head probe with shuffled sites
    per_site: list[SiteMetrics]
    projection: np.ndarray = field(repr=False)  # (n_slides, 2) PCA of slide embeddings
    projection_variance: list[float] = field(default_factory=list)
    slide_ids: list[str] = field(default_factory=list)
    slide_sites: list[str] = field(default_factory=list)
    slide_labels: list[str] = field(default_factory=list)
    umap: np.ndarray | None = field(default=None, repr=False)  # (n_slides, 2), None without umap-learn

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["projection"] = np.round(self.projection, 6).tolist()
        data["umap"] = None if self.umap is None else np.round(self.umap, 6).tolist()
        return data


def pca_2d(x: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """(N, 2) projection on the two leading principal components, and their explained variance ratios."""
    centred = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    total = float((s**2).sum()) or 1.0
    comps = vt[:2]
    proj = centred @ comps.T
    if proj.shape[1] < 2:
        proj = np.column_stack([proj, np.zeros(len(proj))])
    return proj, [float(v**2 / total) for v in s[:2]]


def umap_2d(x: np.ndarray, seed: int = 0) -> np.ndarray | None:
    """(N, 2) UMAP of ``x`` (cosine metric, up to 15 neighbours, seeded), or None when umap-learn is
    not installed or there are fewer than 4 samples."""
    if len(x) < 4:
        return None
    try:
        import umap
    except ImportError:
        return None
    reducer = umap.UMAP(
        n_components=2, n_neighbors=min(15, len(x) - 1), metric="cosine", random_state=seed, init="random"
    )
    return np.asarray(reducer.fit_transform(np.asarray(x, dtype=np.float64)), dtype=np.float64)


def diagnose_cohort(head: TrainedHead, bags: list[Bag], seed: int = 0) -> CohortDiagnostics:
    """All cohort metrics for ``head`` on ``bags`` (see the module docstring)."""
    if len(bags) < 2:
        raise InputError("need at least two slides to diagnose a cohort")
    names = head.label_names
    labels = [names[b.label] for b in bags]
    sites = [str(b.row.site) for b in bags]
    rng = np.random.default_rng(seed)
    tiles = np.concatenate([b.features for b in bags])
    tile_slide = np.concatenate([[i] * b.n_tiles for i, b in enumerate(bags)])
    pick = np.sort(rng.choice(len(tiles), min(MAX_TILES, len(tiles)), replace=False))
    tile_robustness = robustness_metrics(
        tiles[pick],
        [labels[i] for i in tile_slide[pick]],
        [sites[i] for i in tile_slide[pick]],
        [bags[i].row.slide_id for i in tile_slide[pick]],
        group_name="slide",
    )
    slide_emb = np.stack([b.features.mean(axis=0) for b in bags])
    slide_robustness = robustness_metrics(
        slide_emb, labels, sites, [b.row.patient for b in bags], group_name="patient"
    )
    predictions = head.predict_bags(bags)
    probs = np.stack([p.probabilities for p in predictions])
    representation = np.stack([p.representation for p in predictions])
    y = np.array([b.label for b in bags])
    per_site = []
    for site in ["all", *sorted(set(sites))]:
        keep = np.ones(len(y), bool) if site == "all" else np.array(sites) == site
        per_site.append(
            SiteMetrics(
                site,
                int(keep.sum()),
                auc_ovr(y[keep], probs[keep]),
                balanced_accuracy(y[keep], probs[keep].argmax(1)),
                expected_calibration_error(y[keep], probs[keep]),
            )
        )
    projection, variance = pca_2d(slide_emb)
    return CohortDiagnostics(
        n_slides=len(bags),
        n_tiles=int(len(tiles)),
        sites=sorted(set(sites)),
        label_names=list(names),
        tile_robustness=tile_robustness,
        slide_robustness=slide_robustness,
        site_predictability_embeddings=site_predictability(slide_emb, sites, seed=seed),
        site_predictability_head=site_predictability(representation, sites, seed=seed),
        site_variance_embeddings=site_variance_share(slide_emb, sites),
        site_variance_head=site_variance_share(representation, sites),
        chance=1.0 / len(set(sites)),
        probe_chance=site_probe_chance(representation, sites, seed=seed),
        per_site=per_site,
        projection=projection,
        projection_variance=variance,
        slide_ids=[b.row.slide_id for b in bags],
        slide_sites=sites,
        slide_labels=labels,
        umap=umap_2d(slide_emb, seed),
    )


def diagnose_cohort_csv(
    cohort_csv: str | os.PathLike[str],
    head: TrainedHead,
    splits: list[str] | None = None,
    cache_dir: str | None = None,
    device: str = "auto",
    mpp: float | None = None,
    progress: ProgressCallback | None = None,
) -> Generator[Any, None, CohortDiagnostics]:
    """Embed (cached) the slides of a cohort CSV (``splits``: only those) and diagnose them with
    ``head``; yields progress per slide. Unlabelled ``reference`` re-scans are left out. ``mpp``: the
    pixel size (µm/px) of the slides whose ``mpp`` cell is blank (None: their files'). ``progress``
    gets each slide's stages (tissue, plan, embedding) and the run's ``finished`` count."""
    from ..analysis import AnalysisProgress
    from ..cohort import REFERENCE, CohortError, read_cohort_table
    from ..mil import extract_config_for, load_bags

    table = read_cohort_table(cohort_csv, label_names=head.label_names, default_mpp=mpp)
    rows = [r for r in table.rows if r.split != REFERENCE and (splits is None or r.split in splits)]
    if len(rows) < 2:
        raise CohortError(f"{len(rows)} slide(s) in splits {splits}; need at least two to diagnose")
    extract = extract_config_for(head, cache_dir, device)
    bags: list[Bag] = []
    report(progress, "", FINISHED, 0, len(rows))
    for i, row in enumerate(rows, 1):
        bags += load_bags(table, [row], extract, views=(), progress=progress)
        report(progress, Path(row.path).name, FINISHED, i, len(rows), message="embedded")
        yield AnalysisProgress("embedding", i, len(rows), f"features of {Path(row.path).name}")
    return diagnose_cohort(head, bags)


def write_diagnostics(diag: CohortDiagnostics, folder: str | os.PathLike[str]) -> list[Path]:
    """``diagnostics.json`` (everything), ``per_site.csv``, ``robustness.csv`` (RI, MaRI, CRoMa of tiles
    and slides) and ``projection.png`` in ``folder``."""
    folder = Path(folder)
    paths = [
        atomic_write_text(folder / "diagnostics.json", json.dumps(diag.to_dict(), indent=2, default=float)),
        atomic_write_csv(
            folder / "per_site.csv",
            ["site", "n_slides", "auc", "balanced_accuracy", "ece"],
            ([m.site, m.n_slides, m.auc, m.balanced_accuracy, m.ece] for m in diag.per_site),
        ),
        atomic_write_csv(
            folder / "robustness.csv",
            TABLE_COLUMNS,
            table_rows("tiles", diag.tile_robustness) + table_rows("slides", diag.slide_robustness),
        ),
    ]
    figure = projection_figure(diag)
    png = folder / "projection.png"
    figure.savefig(png, dpi=120)
    paths.append(png)
    return paths


def projection_figure(diag: CohortDiagnostics, figure: Any = None) -> Any:
    """Scatter panels of the slide-embedding PCA (and UMAP, when computed), coloured by site and by
    label (drawn into ``figure`` when given, e.g. a widget's canvas, else into a new one)."""
    from matplotlib.figure import Figure

    rows = [("PCA", diag.projection)] + ([("UMAP", diag.umap)] if diag.umap is not None else [])
    if figure is None:
        figure = Figure(figsize=(8, 3.6 * len(rows)), tight_layout=True)
    figure.clear()
    axes = np.atleast_2d(figure.subplots(len(rows), 2))
    var = diag.projection_variance + [0.0, 0.0]
    for (method, points), row in zip(rows, axes):
        for ax, values, title in zip(row, (diag.slide_sites, diag.slide_labels), ("by site", "by label")):
            for value in sorted(set(values)):
                keep = np.array(values) == value
                ax.scatter(points[keep, 0], points[keep, 1], s=18, label=value, alpha=0.8)
            if method == "PCA":
                ax.set_xlabel(f"PC1 ({100 * var[0]:.0f} %)")
                ax.set_ylabel(f"PC2 ({100 * var[1]:.0f} %)")
            else:
                ax.set_xlabel("UMAP 1")
                ax.set_ylabel("UMAP 2")
            ax.set_title(f"slides {title} ({method})", fontsize=9)
            ax.legend(fontsize=7)
    return figure
