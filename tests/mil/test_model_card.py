"""Model cards: every fact a freshly trained head records, old configs shown as "not recorded", the
bundled demo head's notice, and ``wsirobust info-model`` (text, JSON, a bad folder's message)."""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust import __version__, cli
from napari_wsirobust.cohort import CohortRow
from napari_wsirobust.mil import (
    LOSS_PRESETS,
    Bag,
    CheckpointConfig,
    CheckpointError,
    FeatureSource,
    ModelCard,
    TrainConfig,
    Trainer,
    TrainingError,
    load_checkpoint,
    save_checkpoint,
    train_to_completion,
)
from napari_wsirobust.mil.model_card import LABEL_WIDTH, LOSS_TERMS, NOT_RECORDED, TEXT_WIDTH
from napari_wsirobust.mil.train import LossConfig
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.stain import StainProfile

DIM = 8
DEMO_NOTICE = "Demo model trained on synthetic tissue to try the plugin; not for diagnosis."
PROFILE_A = StainProfile(
    hematoxylin_od=(0.65, 0.704, 0.286),
    eosin_od=(0.072, 0.99, 0.105),
    background_rgb=(240.4, 238.0, 236.6),
    concentration_p50=(0.4, 0.2),
    concentration_p99=(1.5, 0.9),
    sharpness=123.45,
    n_pixels=5000,
    jpeg_quality=92,
)
PROFILE_B = {
    **PROFILE_A.to_dict(),
    "sharpness": 12.5,
    "jpeg_quality": None,
    "background_rgb": [250, 249, 240],
}


def _bag(i: int, label: int, site: str, split: str, rng: np.random.Generator) -> Bag:
    x = rng.normal(size=(10, DIM)).astype(np.float32)
    if label:
        x[:3, 0] += 3.0
    row = CohortRow(f"s{i}", f"s{i}.tiff", ["normal", "tumour"][label], site, f"p{i}", split)
    return Bag(row, label, "AB".index(site), x, grid=None)  # type: ignore[arg-type]


def _bags() -> dict[str, list[Bag]]:
    """Train: 7 slides at site A (4 tumour), 5 at B (2 tumour); val: 3 at A, 3 at B, half tumour."""
    rng = np.random.default_rng(0)
    design = {"train": [("A", 7, 4), ("B", 5, 2)], "val": [("A", 3, 2), ("B", 3, 1)]}
    out: dict[str, list[Bag]] = {}
    i = 0
    for split, cells in design.items():
        out[split] = []
        for site, n, tumours in cells:
            for k in range(n):
                out[split].append(_bag(i, int(k < tumours), site, split, rng))
                i += 1
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trainer, Path, datetime, datetime]:
    """A tiny head trained for a few epochs with both sites' colour profiles, saved with a notice."""
    bags = _bags()
    source = FeatureSource("test-encoder", DIM, "w0", {"tile_size": 224, "target_mpp": 0.5})
    config = TrainConfig(epochs=4, min_epochs=1, hidden_dim=8, attention_dim=4, losses=LOSS_PRESETS["plain"])
    before = datetime.now(timezone.utc).replace(microsecond=0)
    trainer = Trainer(
        bags["train"], bags["val"], ["normal", "tumour"], ["A", "B"], source, config,
        site_profiles={"A": PROFILE_A, "B": PROFILE_B},
    )  # fmt: skip
    result = train_to_completion(trainer)
    after = datetime.now(timezone.utc)
    result.config.notice = "Research use only."
    folder = tmp_path_factory.mktemp("card") / "model"
    save_checkpoint(result.model, result.config, folder)
    return trainer, folder, before, after


def test_a_freshly_trained_head_records_every_card_field(trained) -> None:  # type: ignore[no-untyped-def]
    trainer, folder, before, after = trained
    _, config = load_checkpoint(folder)
    created = datetime.strptime(config.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert before <= created <= after + timedelta(seconds=1)
    assert config.cohort == {
        "train": {"slides": 12, "sites": {"A": 7, "B": 5}, "labels": {"normal": 6, "tumour": 6}},
        "val": {"slides": 6, "sites": {"A": 3, "B": 3}, "labels": {"normal": 3, "tumour": 3}},
    }
    # profiles stored as JSON data, a StainProfile and a dict alike
    assert config.site_profiles["A"] == json.loads(json.dumps(PROFILE_A.to_dict()))
    assert (
        config.site_profiles["B"]["sharpness"] == 12.5 and config.site_profiles["B"]["jpeg_quality"] is None
    )
    assert trainer.checkpoint_config().created == config.created  # one time per best model


def test_the_card_of_a_freshly_trained_head(trained) -> None:  # type: ignore[no-untyped-def]
    trainer, folder, _, _ = trained
    card = ModelCard.load(folder)
    best = next(r for r in trainer.history if r.epoch == trainer.best_epoch)
    assert card.notice == "Research use only."
    assert card.sites == ["A", "B"] and card.label_names == ["normal", "tumour"]
    assert card.losses == {"instance": 0.3, "annotated_tiles": 1.0}  # the plain preset's non-zero terms
    assert card.site_standardised is False and card.harmonisation is None
    assert card.metrics is not None and card.metrics["val_auc"] == pytest.approx(best.val_auc)
    assert card.encoder_name == "test-encoder" and card.encoder_weights_id == "w0"
    assert card.tiling == {"tile_size": 224, "target_mpp": 0.5, "overlap": 0, "min_tissue_fraction": 0.25}
    assert card.package_version == __version__

    text = card.to_text()
    lines = _rows(text)
    assert lines["Notice"] == "Research use only."
    assert lines["Created"] == trainer.checkpoint_config().created
    assert lines["train"] == "12 slides; by site A 7, B 5; by label normal 6, tumour 6"
    assert lines["val"] == "6 slides; by site A 3, B 3; by label normal 3, tumour 3"
    assert lines["Sites"] == "A, B"
    assert lines["A"] == (
        "H (0.650,0.704,0.286), E (0.072,0.990,0.105), glass (240,238,237), sharpness 123.5, JPEG q92"
    )
    assert lines["B"].endswith("glass (250,249,240), sharpness 12.5, JPEG quality n/a")
    assert lines["Losses"] == "cross-entropy, instance 0.3, annotated tiles 1"
    assert lines["Harmonisation"] == "none (tiles as scanned)"
    metric_val = [line for line in text.splitlines() if line.startswith("  val ") and "AUC" in line]
    assert metric_val == [
        f"  val{' ' * (LABEL_WIDTH - 5)}AUC {best.val_auc:.3f}, balanced accuracy "
        f"{best.val_balanced_accuracy:.3f}, loss {best.val_loss:.3f}"
    ]
    assert f"best epoch {trainer.best_epoch}, epochs run {len(trainer.history)}" in text
    assert NOT_RECORDED not in text

    data = json.loads(json.dumps(card.to_dict(), allow_nan=False))
    assert data["cohort"]["train"]["sites"] == {"A": 7, "B": 5}
    assert data["site_profiles"]["A"]["jpeg_quality"] == 92
    assert data["notice"] == "Research use only." and data["created"] == trainer.checkpoint_config().created


def _rows(text: str) -> dict[str, str]:
    """Label -> value of every row of a card's text, wrapped lines joined (labels stripped; of two
    rows with one label the first: the cohort's splits come before the metrics' rows)."""
    rows: list[tuple[str, str]] = []
    for line in text.splitlines():
        label, value = line[:LABEL_WIDTH].strip(), line[LABEL_WIDTH:]
        assert len(line) <= TEXT_WIDTH or " " not in value, line
        assert not value or line[LABEL_WIDTH - 1] == " ", line  # values start in one column
        if label:
            rows.append((label, value))
        else:  # a wrapped value goes on under its row's value
            rows[-1] = (rows[-1][0], f"{rows[-1][1]} {value}")
    found: dict[str, str] = {}
    for label, value in rows:
        found.setdefault(label, value)
    return found


def test_the_card_of_an_old_config_shows_not_recorded(tmp_path: Path, trained) -> None:  # type: ignore[no-untyped-def]
    """A config saved before the card fields existed (and one with nothing but what loading needs)
    loads, and its card says "not recorded" where a field is missing."""
    _, folder, _, _ = trained
    old = tmp_path / "old"
    version = next(p for p in folder.iterdir() if p.is_dir())
    shutil.copytree(version, old)
    data = json.loads((old / "config.json").read_text())
    for key in ("notice", "created", "site_profiles", "cohort"):
        del data[key]
    (old / "config.json").write_text(json.dumps(data))
    card = ModelCard.load(old)
    rows = _rows(card.to_text())
    assert card.notice == "" and rows["Notice"] == "none"
    assert card.created is None and rows["Created"] == NOT_RECORDED
    assert rows["train"] == f"12 slides; by site {NOT_RECORDED}"  # from the metrics' slide counts
    assert rows["Sites"] == f"A, B (colour profiles {NOT_RECORDED})"

    bare = {k: data[k] for k in ("head", "encoder_name", "embed_dim", "label_names")}
    (old / "config.json").write_text(json.dumps(bare))
    card = ModelCard.load(old)
    rows = _rows(card.to_text())
    for label in ("Created", "Encoder weights", "Tiling", "Training cohort", "Sites", "Losses", "Metrics"):
        assert rows[label] == NOT_RECORDED, label
    assert rows["Encoder"] == f"test-encoder ({DIM}-d features)"
    assert json.loads(json.dumps(card.to_dict()))["cohort"] is None


def test_a_hand_edited_config_with_odd_card_entries_still_gives_a_card() -> None:
    config = CheckpointConfig.from_dict(
        {
            "head": {"in_dim": 4, "n_classes": 2},
            "encoder_name": "e",
            "embed_dim": 4,
            "label_names": ["a", "b"],
            "site_profiles": {"A": {"sharpness": 3.0}, "B": "not an object"},
            "cohort": {"train": "twelve"},
            "losses": {"contrastive": "high", "adversarial": 2, "sites": ["A"]},
            "metrics": {"val_auc": float("nan"), "per_site": {"A": {"auc": 0.5}}},
        }
    )
    card = ModelCard.from_config(config)
    rows = _rows(card.to_text())
    assert rows["A"].startswith("unreadable profile (profile lacks ")
    assert rows["train"] == f"slides {NOT_RECORDED}; by site {NOT_RECORDED}"
    assert card.losses == {"adversarial": 2.0}
    assert rows["val"] == "AUC n/a" and rows["per site A"] == "AUC 0.500"
    assert json.loads(json.dumps(card.to_dict(), allow_nan=False))["metrics"]["val_auc"] is None


def test_the_demo_heads_card_has_its_notice_and_sites() -> None:
    card = ModelCard.load(demo_model_dir())
    assert card.notice == DEMO_NOTICE
    assert card.sites == ["A", "B", "C"]
    assert card.harmonisation is not None and card.harmonisation["site"] == "C"
    rows = _rows(card.to_text())
    assert rows["Notice"] == DEMO_NOTICE
    assert rows["Sites"].startswith("A, B, C")
    assert rows["train"].startswith("32 slides") and rows["val"].startswith("8 slides")
    assert rows["Harmonisation"].startswith("into site C's profile: H (0.545,0.739,0.398)")


def test_info_model_prints_the_card_and_its_json(capsys: pytest.CaptureFixture[str]) -> None:
    folder = demo_model_dir()
    assert cli.main(["info-model", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out == ModelCard.load(folder).to_text() + "\n"
    assert DEMO_NOTICE in out and "A, B, C" in out
    assert cli.main(["info-model", str(folder), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == ModelCard.load(folder).to_dict()
    assert data["notice"] == DEMO_NOTICE and data["sites"] == ["A", "B", "C"] and data["created"] is None


def test_info_model_on_a_bad_folder_says_why_as_predict_does(
    tmp_path: Path, trained, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["info-model", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: model folder not found: {tmp_path / 'missing'}\n"

    _, folder, _, _ = trained
    damaged = tmp_path / "damaged"
    shutil.copytree(next(p for p in folder.iterdir() if p.is_dir()), damaged)
    data = json.loads((damaged / "config.json").read_text())
    data["head"]["hidden_dim"] = 10**9
    (damaged / "config.json").write_text(json.dumps(data))
    assert cli.main(["info-model", str(damaged)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {damaged}: config.json says hidden_dim=1000000000 but model.safetensors")
    slide = str(tmp_path / "slide.svs")
    assert cli.main(["predict", str(damaged), slide, "--out", str(tmp_path / "p.csv")]) == 2
    assert capsys.readouterr().err == err  # the same message the other commands give
    with pytest.raises(CheckpointError):
        ModelCard.load(damaged)


def test_site_profiles_must_be_profiles() -> None:
    bags = _bags()
    source = FeatureSource("test-encoder", DIM)
    with pytest.raises(TrainingError, match="site A: a colour profile is a StainProfile or its dict"):
        Trainer(bags["train"], bags["val"], ["normal", "tumour"], ["A", "B"], source, site_profiles={"A": 3})


def test_the_card_knows_every_weighted_loss_term() -> None:
    """A LossConfig field that switches a term on (it changes ``describe``) is one the card lists."""
    names = {f.name for f in fields(LossConfig)}
    assert set(LOSS_TERMS) <= names
    for f in fields(LossConfig):
        if f.type in ("float", float) and LossConfig(**{f.name: 1.0}).describe() != "plain":
            assert f.name in LOSS_TERMS, f.name


def test_the_cohort_record_counts_reference_rescans() -> None:
    bags = _bags()
    rng = np.random.default_rng(1)
    reference = [_bag(100 + i, 0, site, "reference", rng) for i, site in enumerate("AB")]
    for bag in reference:
        bag.label = -1
    source = FeatureSource("test-encoder", DIM)
    trainer = Trainer(
        bags["train"], bags["val"], ["normal", "tumour"], ["A", "B"], source, reference=reference
    )
    cohort = trainer.checkpoint_config().cohort
    assert cohort["reference"] == {"slides": 2, "sites": {"A": 1, "B": 1}, "labels": {}}
    assert list(cohort) == ["train", "val", "reference"]
    rows = _rows(ModelCard.from_config(trainer.checkpoint_config()).to_text())
    assert rows["reference"] == "2 slides; by site A 1, B 1"  # re-scans carry no label


def _demo_copy(folder: Path, notice: str | None) -> Path:
    """The bundled demo head copied to ``folder``, its notice replaced (None: the key removed)."""
    shutil.copytree(demo_model_dir(), folder, ignore=shutil.ignore_patterns("__*"))
    data = json.loads((folder / "config.json").read_text())
    if notice is None:
        del data["notice"]
    else:
        data["notice"] = notice
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    return folder


@pytest.mark.slow
def test_predict_prints_the_notice_once_before_the_results(
    tumour_slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = str(tmp_path / "cache")
    slides = [str(tumour_slide), str(tumour_slide)]  # two predictions, one notice
    args = [*slides, "--out", str(tmp_path / "p.csv"), "--cache", cache, "--quiet"]
    assert cli.main(["predict", str(demo_model_dir()), *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"notice: {DEMO_NOTICE}"
    assert sum(DEMO_NOTICE in line for line in lines) == 1
    assert [line.split()[0] for line in lines[1:3]] == ["tumour", "tumour"]
    plain = _demo_copy(tmp_path / "plain", None)
    assert cli.main(["predict", str(plain), *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert not any(line.startswith("notice") for line in lines) and lines[0].startswith("tumour")
