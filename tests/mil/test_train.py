"""Training: progress, determinism, class balance, cancel-keeps-best, refusals, cohort tables."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_wsirobust.cohort import CohortError, CohortRow, CohortTable, read_cohort_table, rescanned_patients
from napari_wsirobust.features import ExtractConfig
from napari_wsirobust.mil import (
    DEFAULT_PRESET,
    LOSS_PRESETS,
    Bag,
    FeatureSource,
    TrainConfig,
    TrainedHead,
    Trainer,
    TrainingError,
    evaluate,
    load_checkpoint,
    resolve_preset,
    train_table,
    train_to_completion,
)

DIM = 16


def _bag(i: int, label: int, site: str, rng: np.random.Generator, split: str, n: int = 12) -> Bag:
    """Tiles ~ N(0, 1); tumour bags hold 3 tiles shifted along dimension 0; each site adds its offset
    on dimension 1 (the technical signal); one scanner-swapped view with another offset."""
    x = rng.normal(size=(n, DIM)).astype(np.float32)
    if label:
        x[:3, 0] += 3.0
    offset = {"A": 2.0, "B": -2.0}[site]
    x[:, 1] += offset
    view = x.copy()
    view[:, 1] += rng.normal(0, 2.0)
    row = CohortRow(f"s{i}", f"s{i}.tiff", ["normal", "tumour"][label], site, f"p{i}", split)
    fraction = np.zeros(n, np.float32)
    if label:
        fraction[:3] = 1.0
    return Bag(row, label, ["A", "B"].index(site), x, grid=None, views=[view], tumour_fraction=fraction)  # type: ignore[arg-type]


def _bags(seed: int = 0) -> dict[str, list[Bag]]:
    rng = np.random.default_rng(seed)
    out: dict[str, list[Bag]] = {"train": [], "val": [], "test": []}
    i = 0
    for split, n in (("train", 24), ("val", 8), ("test", 12)):
        for k in range(n):
            label = k % 2
            site = "A" if (label == 1) == (k % 6 != 0) else "B"
            out[split].append(_bag(i, label, site, rng, split))
            i += 1
    return out


SOURCE = FeatureSource("test-encoder", DIM, "w0", {"tile_size": 224, "target_mpp": 0.5})


def _trainer(bags: dict[str, list[Bag]], preset: str = "plain", **kw: object) -> Trainer:
    config = TrainConfig(epochs=kw.pop("epochs", 12), seed=kw.pop("seed", 0), losses=LOSS_PRESETS[preset])  # type: ignore[arg-type]
    return Trainer(bags["train"], bags["val"], ["normal", "tumour"], ["A", "B"], SOURCE, config, **kw)  # type: ignore[arg-type]


def test_epochs_yield_progress_and_learn() -> None:
    bags = _bags()
    trainer = _trainer(bags, "robust", epochs=30)
    reports = list(trainer.epochs())
    assert [r.epoch for r in reports] == list(range(1, len(reports) + 1))
    assert {"ce", "instance", "contrastive", "adversarial", "view_ce"} <= set(reports[0].losses)
    assert reports[-1].losses["ce"] < reports[0].losses["ce"]
    result = trainer.result()
    metrics, preds = evaluate(TrainedHead(result.model, result.config), bags["test"], n_bootstrap=100)
    assert metrics["auc"] > 0.8
    assert metrics["localisation_auc"] > 0.8  # attention finds the shifted (tumour) tiles
    assert len(preds) == 12 and preds[0].instance_probabilities.shape == (12, 2)


def test_site_moment_term_runs_with_two_sites_and_is_skipped_with_one() -> None:
    bags = _bags()
    reports = list(_trainer(bags, "robust-moment", epochs=15).epochs())
    assert "site_moment" in reports[0].losses
    # the representation's within-label site offset (dimension 1 of the tiles) is driven down
    assert reports[-1].losses["site_moment"] < reports[0].losses["site_moment"]
    one_site = {k: [replace(b, site=0) for b in v] for k, v in bags.items()}
    reports = list(_trainer(one_site, "robust-moment", epochs=2).epochs())
    assert "site_moment" not in reports[0].losses and "contrastive" in reports[0].losses


def _with_rescans(bags: dict[str, list[Bag]], n: int = 4) -> dict[str, list[Bag]]:
    """The first ``n`` training slides also scanned at the other site: same tissue and patient, the
    site offset on dimension 1 moved to the other site's."""
    rescans = []
    for bag in bags["train"][:n]:
        other = "B" if bag.row.site == "A" else "A"
        x = bag.features.copy()
        x[:, 1] += {"A": 2.0, "B": -2.0}[other] - {"A": 2.0, "B": -2.0}[bag.row.site]
        row = replace(bag.row, slide_id=bag.row.slide_id + "_rescan", site=other)
        rescans.append(replace(bag, row=row, site=["A", "B"].index(other), features=x, views=[x.copy()]))
    return {**bags, "train": bags["train"] + rescans}


def _paired_term_grads(trainer: Trainer) -> tuple[float, float]:
    """Summed |gradient| the paired-scan term alone sends to the attention and to the projection."""
    trainer.model.zero_grad()
    trainer._paired_scan_term().backward()
    model = trainer.model
    attention = [p for m in (model.attention_v, model.attention_u, model.attention_w) for p in m.parameters()]
    attention_grad = sum(float(p.grad.abs().sum()) for p in attention if p.grad is not None)
    return attention_grad, float(model.projection[0].weight.grad.abs().sum())


def test_paired_scan_term_learns_from_rescans_and_is_refused_without_them() -> None:
    bags = _with_rescans(_bags())
    reports = list(_trainer(bags, "paired-scan", epochs=15).epochs())
    assert "paired_scan" in reports[0].losses
    assert reports[-1].losses["paired_scan"] < reports[0].losses["paired_scan"]
    # on labelled re-scans the term trains the attention as well as the projection
    attention_grad, projection_grad = _paired_term_grads(_trainer(bags, "paired-scan"))
    assert attention_grad > 0 and projection_grad > 0
    with pytest.raises(TrainingError, match="scanned at two or more sites"):
        _trainer(_bags(), "paired-scan")
    # the workflow the CLI and the Train widget call refuses before embedding anything
    rows = [b.row for b in _bags()["train"] + _bags()["val"]]
    table = CohortTable(rows, ["normal", "tumour"], ["A", "B"])
    config = TrainConfig(losses=LOSS_PRESETS["robust-paired"])
    job = train_table(table, "unused", ExtractConfig(cache_dir="unused"), config)
    with pytest.raises(CohortError, match="scanned at two or more sites"):
        next(job)
    assert rescanned_patients(rows) == set()
    assert resolve_preset("auto", rows) == DEFAULT_PRESET and resolve_preset("plain", rows) == "plain"
    assert resolve_preset("auto", [b.row for b in _with_rescans(_bags())["train"]]) == "robust-paired"
    with pytest.raises(TrainingError, match="unknown loss configuration 'robst'"):
        resolve_preset("robst", rows)
    assert rescanned_patients([b.row for b in _with_rescans(_bags())["train"]]) == {"p0", "p1", "p2", "p3"}


def _reference_rescans(n: int = 3, seed: int = 5) -> list[Bag]:
    """``n`` unlabelled reference patients, each scanned at both sites (same tiles, the site offset on
    dimension 1 moved): the paired-scan loss's only source in the reference tests."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        home = _bag(100 + i, i % 2, "A", rng, "reference")
        x = home.features.copy()
        x[:, 1] -= 4.0  # A's offset (+2) -> B's (-2)
        row = replace(home.row, slide_id=home.row.slide_id + "_B", site="B", label="")
        out.append(replace(home, row=replace(home.row, label=""), label=-1))
        out.append(replace(home, row=row, label=-1, site=1, features=x, views=[x.copy()]))
    return out


def test_reference_rescans_feed_only_the_paired_scan_term() -> None:
    bags, reference = _bags(), _reference_rescans()
    with pytest.raises(TrainingError, match="scanned at two or more sites"):
        _trainer(bags, "robust-paired")  # no re-scans among the training slides ...
    trainer = _trainer(bags, "robust-paired", epochs=15, reference=reference)  # ... but in the reference set
    assert [b.row.patient for g in trainer._paired for b in g] == [
        "p100",
        "p100",
        "p101",
        "p101",
        "p102",
        "p102",
    ]
    reports = list(trainer.epochs())
    assert "paired_scan" in reports[0].losses
    assert reports[-1].losses["paired_scan"] < reports[0].losses["paired_scan"]
    # unlabelled reference slides shape the representation, never where the head looks
    attention_grad, projection_grad = _paired_term_grads(trainer)
    assert attention_grad == 0.0 and projection_grad > 0
    # the classification and site terms never see the reference slides (their label is -1)
    assert len(trainer._balanced_order()) == len(bags["train"])
    assert trainer.checkpoint_config().metrics["paired_scan_slides"] == 6
    assert trainer.checkpoint_config().metrics["train_slides"] == len(bags["train"])
    # a plain head trained beside an (unused) reference set is the plain head trained without it
    without = train_to_completion(_trainer(bags, "plain", epochs=4)).model.state_dict()
    beside = train_to_completion(_trainer(bags, "plain", epochs=4, reference=reference)).model.state_dict()
    assert all(torch.equal(without[k], beside[k]) for k in without)
    # auto looks at labelled training re-scans only; reference re-scans leave it at the default
    rows = [b.row for b in bags["train"] + reference]
    assert resolve_preset("auto", rows) == DEFAULT_PRESET


def test_same_seed_same_model() -> None:
    bags = _bags()
    a = train_to_completion(_trainer(bags, "robust", seed=3)).model.state_dict()
    b = train_to_completion(_trainer(bags, "robust", seed=3)).model.state_dict()
    c = train_to_completion(_trainer(bags, "robust", seed=4)).model.state_dict()
    for k in a:
        torch.testing.assert_close(a[k], b[k])
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_class_balanced_sampling() -> None:
    bags = _bags()
    imbalanced = {**bags, "train": bags["train"][:2] + [b for b in bags["train"] if b.label == 1]}
    trainer = _trainer(imbalanced)
    labels = [trainer.train_bags[i].label for _ in range(50) for i in trainer._balanced_order()]
    assert abs(np.mean(labels) - 0.5) < 0.05  # 1 normal : 6 tumour in the data, balanced in the draws


def test_cancel_keeps_best_checkpoint(tmp_path: Path) -> None:
    trainer = _trainer(_bags(), "plain", epochs=40, checkpoint_dir=tmp_path / "model")
    for report in trainer.epochs():
        if report.epoch == 5:
            break  # the GUI's cancel: stop iterating
    result = trainer.result()
    assert result.cancelled and len(result.history) == 5 and 1 <= result.best_epoch <= 5
    loaded, config = load_checkpoint(tmp_path / "model")
    assert config.metrics["best_epoch"] == result.best_epoch
    assert config.metrics["val_auc"] == max(r.val_auc for r in result.history)
    x = torch.randn(1, 7, DIM)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), result.model(x))


def test_site_standardised_head_round_trips(tmp_path: Path) -> None:
    trainer = _trainer(_bags(), "site-norm", epochs=4)
    train_to_completion(trainer)
    trainer.save(tmp_path / "m")
    head = TrainedHead.load(tmp_path / "m")
    assert head.standardiser is not None and set(head.standardiser.stats) == {"A", "B"}
    bag = _bags()["test"][0]
    a = head.predict(bag.features, "A").probabilities
    b = trainer.result()
    ref = TrainedHead(b.model, b.config, b.standardiser).predict(bag.features, "A").probabilities
    np.testing.assert_allclose(a, ref, atol=1e-6)


def test_refusals() -> None:
    bags = _bags()
    with pytest.raises(TrainingError, match="one label only"):
        _trainer({**bags, "train": [b for b in bags["train"] if b.label == 0]})
    with pytest.raises(TrainingError, match="'val' is empty"):
        _trainer({**bags, "val": []})
    no_views = [Bag(b.row, b.label, b.site, b.features, b.grid) for b in bags["train"]]
    with pytest.raises(TrainingError, match="scanner-swapped views"):
        _trainer({**bags, "train": no_views}, "consistency")
    wrong_dim = [Bag(b.row, b.label, b.site, b.features[:, :8], b.grid) for b in bags["train"]]
    with pytest.raises(TrainingError, match="expected \\(tiles, 16\\)"):
        _trainer({**bags, "train": wrong_dim})


def _write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_cohort_table_validation(tmp_path: Path) -> None:
    rows = [
        {"path": "a.tiff", "label": "tumour", "scanner": "A", "patient": "p1", "split": "train"},
        {"path": "b.tiff", "label": "normal", "scanner": "B", "patient": "p1", "split": "test"},
    ]
    with pytest.raises(CohortError, match="patient 'p1' appears in splits 'train' and 'test'"):
        read_cohort_table(_write_csv(tmp_path / "leak.csv", rows))
    with pytest.raises(CohortError, match="missing column"):
        read_cohort_table(_write_csv(tmp_path / "nolabel.csv", [{"path": "a.tiff"}]))
    many = [
        {"path": f"s{i}.tiff", "label": ["normal", "tumour"][i % 2], "patient": f"p{i // 2}"}
        for i in range(40)
    ]
    table = read_cohort_table(_write_csv(tmp_path / "nosplit.csv", many), split_seed=1)
    by_patient: dict[str, set[str]] = {}
    for r in table.rows:
        by_patient.setdefault(r.patient, set()).add(r.split)
    assert all(len(s) == 1 for s in by_patient.values())  # splits drawn per patient
    assert {r.split for r in table.rows} == {"train", "val", "test"}
    assert table.rows[0].path == str((tmp_path / "s0.tiff").resolve()) and table.site_names == ["unknown"]


def test_reference_rows_may_be_unlabelled(tmp_path: Path) -> None:
    rows = [
        {"path": "t.tiff", "label": "tumour", "scanner": "A", "patient": "p1", "split": "train"},
        {"path": "n.tiff", "label": "normal", "scanner": "B", "patient": "p2", "split": "train"},
        {"path": "r1.tiff", "label": "", "scanner": "A", "patient": "ref1", "split": "reference"},
        {"path": "r2.tiff", "label": "", "scanner": "B", "patient": "ref1", "split": "reference"},
    ]
    table = read_cohort_table(_write_csv(tmp_path / "ref.csv", rows))
    assert table.label_names == ["normal", "tumour"]  # a blank reference label is not a class
    assert [r.patient for r in table.split("reference")] == ["ref1", "ref1"]
    assert rescanned_patients(table.split("train", "reference")) == {"ref1"}
    unlabelled_train = [dict(rows[0], label=""), *rows[1:]]
    with pytest.raises(CohortError, match="no label for t"):
        read_cohort_table(_write_csv(tmp_path / "bad.csv", unlabelled_train))
    with pytest.raises(CohortError, match="only 'reference' slides"):
        read_cohort_table(_write_csv(tmp_path / "refonly.csv", rows[2:]))
    with pytest.raises(CohortError, match="filled for some slides only"):
        read_cohort_table(
            _write_csv(tmp_path / "mixed.csv", [dict(r, split="") for r in rows[:2]] + rows[2:])
        )
