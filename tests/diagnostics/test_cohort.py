"""Cohort diagnostics on hand-made bags whose technical and biological signals are known."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_wsirobust.cohort import CohortRow
from napari_wsirobust.diagnostics import (
    diagnose_cohort,
    projection_figure,
    robustness_index,
    robustness_metrics,
    summary_rows,
    write_diagnostics,
)
from napari_wsirobust.diagnostics.cohort import pca_2d
from napari_wsirobust.mil import Bag, CheckpointConfig, HeadConfig, TrainedHead

DIM = 8


def _head() -> TrainedHead:
    torch.manual_seed(0)
    config = HeadConfig(in_dim=DIM, n_classes=2, hidden_dim=16, attention_dim=8)
    return TrainedHead(config.build().eval(), CheckpointConfig(config, "test", DIM, ["normal", "tumour"]))


def _bags(site_shift: float, biology_shift: float, n: int = 24) -> list[Bag]:
    """Slide i: label i % 2, site (i // 2) % 3; tiles ~ N(0, 0.1) plus a shift along dimension 0 per
    label and along dimension 1 + site per site."""
    rng = np.random.default_rng(1)
    bags = []
    for i in range(n):
        label, site = i % 2, (i // 2) % 3
        x = rng.normal(0, 0.1, (10, DIM)).astype(np.float32)
        x[:, 0] += biology_shift * label
        x[:, 1 + site] += site_shift
        x[:, 5] += 1.0  # a common offset so cosine similarity is well defined
        row = CohortRow(f"s{i}", f"s{i}.tiff", ["normal", "tumour"][label], "ABC"[site], f"p{i}", "test")
        bags.append(Bag(row, label, site, x, grid=None))  # type: ignore[arg-type]
    return bags


def _tiles(bags: list[Bag]) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    rows = [b.row for b in bags for _ in range(b.n_tiles)]
    x = np.concatenate([b.features for b in bags])
    return x, [r.label for r in rows], [r.site for r in rows], [r.slide_id for r in rows]


def test_site_dominated_embeddings_score_low_robustness_and_high_site_predictability() -> None:
    diag = diagnose_cohort(_head(), _bags(site_shift=3.0, biology_shift=0.0))
    tiles, slides = diag.tile_robustness, diag.slide_robustness
    assert tiles.ri < 0.1 and slides.ri < 0.1 and tiles.mari < 0.1 and slides.mari < 0.1
    assert tiles.croma < -0.5 and tiles.croma_worst < -0.5 and tiles.croma_site_dominant > 0.9
    assert tiles.n_samples == 240 and slides.n_samples == 24 and tiles.source.startswith("croma")
    assert diag.site_predictability_embeddings > 0.9 and diag.chance == pytest.approx(1 / 3)
    # 24 slides, 4 per (site, label): 4 other-class slides of a slide's site, fewer than CRoMa's 5
    assert np.isnan(slides.croma) and "fewest here are 8 and 4" in slides.croma_reason
    # both signals, site stronger: a slide's nearest neighbours share its site *and* class (SS only),
    # so the slide-level index is undefined (NaN) rather than a made-up number
    mixed = diagnose_cohort(_head(), _bags(site_shift=3.0, biology_shift=0.3))
    assert np.isnan(mixed.slide_robustness.ri) and mixed.slide_robustness.ri_support == 0.0
    assert "no sample has" in mixed.slide_robustness.ri_reason and mixed.tile_robustness.ri < 0.1


def test_biology_dominated_embeddings_score_high_robustness() -> None:
    diag = diagnose_cohort(_head(), _bags(site_shift=0.0, biology_shift=3.0))
    tiles, slides = diag.tile_robustness, diag.slide_robustness
    assert tiles.ri > 0.9 and slides.ri > 0.9 and tiles.mari > 0.9 and slides.mari > 0.9
    assert tiles.croma > 0.5 and tiles.croma_worst > 0.5 and tiles.croma_site_dominant < 0.1
    assert diag.site_predictability_embeddings < 0.6  # chance is 1/3
    assert 1 / 3 < diag.probe_chance < 0.75  # 24 slides: the shuffled-site probe's 95th percentile
    assert [m.site for m in diag.per_site] == ["all", "A", "B", "C"]
    assert [m.n_slides for m in diag.per_site] == [24, 8, 8, 8]


@pytest.mark.parametrize(("site_shift", "biology_shift"), [(3.0, 0.0), (3.0, 0.3), (0.0, 3.0), (1.0, 1.0)])
def test_croma_ri_equals_our_index_on_these_cohorts(site_shift: float, biology_shift: float) -> None:
    """Tile level (neighbours of the same slide excluded) and slide level (same patient excluded)."""
    bags = _bags(site_shift, biology_shift)
    slide_emb = np.stack([b.features.mean(axis=0) for b in bags])
    slide_args = (
        slide_emb,
        [b.row.label for b in bags],
        [b.row.site for b in bags],
        [b.row.patient for b in bags],
    )
    for (x, labels, sites, groups), ks in ((_tiles(bags), (1, 3, 5, 11, 21)), (slide_args, (1, 3, 5, 11))):
        for k in ks:
            ours = robustness_index(x, labels, sites, k=k, groups=groups).robustness_index
            theirs = robustness_metrics(x, labels, sites, groups, k_candidates=(k,)).ri
            assert theirs == pytest.approx(ours, abs=1e-4, nan_ok=True)


def test_pca_and_written_files(tmp_path: Path) -> None:
    x = np.column_stack([np.arange(10.0), np.zeros(10), np.zeros(10)])
    proj, var = pca_2d(x)
    assert var[0] == pytest.approx(1.0) and np.allclose(np.abs(proj[:, 0]), np.abs(x[:, 0] - 4.5))
    diag = diagnose_cohort(_head(), _bags(0.2, 0.2))  # weak signals: every tile metric defined
    paths = write_diagnostics(diag, tmp_path / "out")
    assert [p.name for p in paths] == ["diagnostics.json", "per_site.csv", "robustness.csv", "projection.png"]
    data = json.loads(paths[0].read_text())
    assert data["n_slides"] == 24 and len(data["projection"]) == 24 and data["sites"] == ["A", "B", "C"]
    assert data["tile_robustness"]["ri"] == pytest.approx(diag.tile_robustness.ri)
    assert data["tile_robustness"]["k"] == diag.tile_robustness.k >= 1
    assert data["slide_robustness"]["croma_reason"] == diag.slide_robustness.croma_reason != ""
    with open(paths[2], newline="") as fh:
        table = list(csv.DictReader(fh))
    assert [(r["level"], r["metric"]) for r in table] == [
        (level, metric) for level in ("tiles", "slides") for metric in ("RI", "MaRI", "CRoMa")
    ]
    assert float(table[1]["value"]) == pytest.approx(diag.tile_robustness.mari)
    assert float(table[2]["worst_10pct"]) == pytest.approx(diag.tile_robustness.croma_worst)
    assert table[5]["value"] == "nan" and "fewest" in table[5]["reason"]
    assert paths[3].stat().st_size > 10_000
    rows = dict(summary_rows(diag))
    assert rows["RI, tiles"].startswith(f"{diag.tile_robustness.ri:.3f} (k={diag.tile_robustness.k}, support")
    assert float(rows["CRoMa worst 10 %, tiles"]) == pytest.approx(diag.tile_robustness.croma_worst, abs=5e-4)
    assert rows["CRoMa, slides"].startswith("n/a (needs 5 samples")
    with pytest.raises(ValueError, match="two slides"):
        diagnose_cohort(_head(), _bags(1.0, 1.0)[:1])


def test_umap_panel_groups_sites_and_is_left_out_without_umap(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("umap")  # the `umap` extra, installed with `dev`
    diag = diagnose_cohort(_head(), _bags(site_shift=3.0, biology_shift=0.0))
    assert diag.umap is not None and diag.umap.shape == (24, 2)
    # site-dominated embeddings: each slide's nearest neighbour in the UMAP is from its own site
    d = np.linalg.norm(diag.umap[:, None] - diag.umap[None], axis=-1) + np.eye(24) * 1e9
    sites = np.array(diag.slide_sites)
    assert np.mean(sites[d.argmin(axis=1)] == sites) > 0.9
    assert len(projection_figure(diag).axes) == 4 and len(diag.to_dict()["umap"]) == 24
    monkeypatch.setitem(__import__("sys").modules, "umap", None)  # as if umap-learn were not installed
    without = diagnose_cohort(_head(), _bags(site_shift=3.0, biology_shift=0.0))
    assert without.umap is None and without.to_dict()["umap"] is None
    assert len(projection_figure(without).axes) == 2
