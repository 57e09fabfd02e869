"""The shortcut benchmark, small and fast, and the train/predict command line on the same cohort."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.benchmarking import (
    ShortcutConfig,
    ShortcutData,
    markdown_table,
    prepare,
    summarise,
    usable_presets,
)
from napari_wsirobust.benchmarking.shortcut import flip_rate, run_one
from napari_wsirobust.cli import main as cli_main
from napari_wsirobust.cohort import REFERENCE, TRAIN, read_cohort_table
from napari_wsirobust.mil import DEFAULT_PRESET, TrainConfig, TrainedHead, resolve_preset
from napari_wsirobust.stain import training_site_profiles
from napari_wsirobust.synthetic import CohortConfig

pytestmark = pytest.mark.slow
SMALL = CohortConfig(width=1024, height=768, patients_train=24, patients_test_id=8, workers=2)


@pytest.fixture(scope="module")
def small_benchmark(tmp_path_factory: pytest.TempPathFactory) -> tuple[ShortcutConfig, ShortcutData]:
    work = tmp_path_factory.mktemp("shortcut")
    config = ShortcutConfig(work_dir=str(work), cohort=SMALL, workers=0)
    return config, prepare(config, log=lambda _: None)


def test_robust_head_beats_plain_on_shifted_test(
    small_benchmark: tuple[ShortcutConfig, ShortcutData],
) -> None:
    _, data = small_benchmark
    train = TrainConfig(epochs=40)
    runs = [run_one(data, preset, seed, train) for preset in ("plain", DEFAULT_PRESET) for seed in (0, 1, 2)]
    summary = summarise(runs)
    plain = [r["auc_shifted"] for r in runs if r["preset"] == "plain"]
    robust = [r["auc_shifted"] for r in runs if r["preset"] == DEFAULT_PRESET]
    assert np.mean(robust) > np.mean(plain), (plain, robust)
    assert sum(r > p for r, p in zip(robust, plain)) >= 2  # seed by seed, not only on average
    assert summary["plain"]["drop"]["mean"] > summary[DEFAULT_PRESET]["drop"]["mean"]
    assert all(0.0 <= r["site_variance"] <= 1.0 for r in runs)
    table = markdown_table(summary, len(data.table.site_names))
    assert table.count("\n") == 4 and "site share of variance" in table and f"| {DEFAULT_PRESET} (" in table


def test_on_harmonised_tiles_the_site_terms_beat_the_plain_head(
    small_benchmark: tuple[ShortcutConfig, ShortcutData],
) -> None:
    config, _ = small_benchmark
    data = prepare(replace(config, harmonise="auto"), log=lambda _: None)
    assert data.source.harmonise["site"] == "C"
    assert all(not b.views for bags in data.bags.values() for b in bags)  # no views of harmonised tiles
    assert "augment" not in usable_presets(config.cohort, harmonised=True)
    train = TrainConfig(epochs=40)
    runs = [run_one(data, preset, seed, train) for preset in ("plain", "robust-site") for seed in (0, 1, 2)]
    plain = [r["auc_shifted"] for r in runs if r["preset"] == "plain"]
    robust = [r["auc_shifted"] for r in runs if r["preset"] == "robust-site"]
    assert np.mean(robust) > np.mean(plain), (plain, robust)
    assert sum(r >= p for r, p in zip(robust, plain)) >= 2, (plain, robust)


def test_flip_rate_counts_patients_whose_label_changes() -> None:
    from napari_wsirobust.cohort import CohortRow
    from napari_wsirobust.mil import Bag

    def bag(patient: str, site: str) -> Bag:
        row = CohortRow(f"{patient}{site}", "x", "tumour", site, patient, "test_ood")
        return Bag(row, 1, 0, np.zeros((1, 2), np.float32), grid=None)  # type: ignore[arg-type]

    bags = [bag("p1", "A"), bag("p1", "B"), bag("p2", "A"), bag("p2", "B"), bag("p3", "A")]
    assert flip_rate(bags, [1, 0, 1, 1, 0]) == 0.5  # p1 flips, p2 does not, p3 has one scan


def test_cohort_and_benchmark_commands_refuse_bad_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["generate-cohort", str(tmp_path / "c"), "--rescanned-train-patients", "17"]) == 2
    assert "rescanned_train_patients must be within 0..16" in capsys.readouterr().err
    out = str(tmp_path / "b")
    assert cli_main(["benchmark-shortcut", "--out", out, "--presets", "plain,robsut"]) == 2
    assert "unknown preset(s) robsut" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "b").exists()  # nothing generated
    plain_cohort = usable_presets(CohortConfig())
    rescanned = usable_presets(CohortConfig(rescanned_train_patients=1))
    assert "paired-scan" not in plain_cohort and DEFAULT_PRESET in plain_cohort
    assert set(rescanned) - set(plain_cohort) == {"paired-scan", "robust-paired"}
    assert usable_presets(CohortConfig(reference_patients=1)) == rescanned
    assert cli_main(["generate-cohort", str(tmp_path / "c"), "--reference-patients", "-1"]) == 2
    assert "reference_patients must be within 0..50" in capsys.readouterr().err


def _train_args(cohort_csv: Path, model: Path, cache: str, epochs: int) -> list[str]:
    """`wsirobust train` arguments on a cached small cohort (loss left to its default, auto)."""
    return [
        "train",
        str(cohort_csv),
        "--out",
        str(model),
        "--epochs",
        str(epochs),
        "--cache",
        cache,
        "--workers",
        "0",
    ]


def test_train_and_predict_command_line(
    small_benchmark: tuple[ShortcutConfig, ShortcutData],
    tmp_path: Path,
    shared_slides: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config, data = small_benchmark
    cohort_csv = Path(config.work_dir) / "cohort" / "cohort.csv"
    cache = str(Path(config.work_dir) / "features")
    model = tmp_path / "model"
    args = _train_args(cohort_csv, model, cache, epochs=8)
    assert cli_main(args) == 0
    # the defaults: tiles harmonised to the softest site, and the view-free site terms
    assert "loss configuration: robust-site (auto)" in capsys.readouterr().out
    head = TrainedHead.load(model)
    assert head.config.encoder_name == "effnet-lite0-imagenet" and head.label_names == ["normal", "tumour"]
    assert head.config.losses["site_moment"] == 30.0 and head.config.losses["view_ce"] == 0
    assert head.config.harmonise["site"] == "C" and head.config.metrics["epochs_run"] >= 1
    # the training sites' colour profiles are saved for the unlike-training check
    by_site: dict[str, list[str]] = {}
    for row in data.table.split("train"):
        by_site.setdefault(row.site, []).append(row.path)
    expected_sites = training_site_profiles(by_site)
    assert head.site_profiles() == expected_sites and sorted(expected_sites) == ["A", "B", "C"]
    slides = [r.path for r in data.table.split("test_ood")[:3]]
    real = str(shared_slides / "cmu-1-small-region.svs")  # a real Aperio H&E slide: no training site's
    out = tmp_path / "pred.csv"
    status = cli_main(
        [
            "predict",
            str(model),
            *slides,
            real,
            str(shared_slides / "broken.svs"),
            "--out",
            str(out),
            "--cache",
            cache,
        ]
    )
    assert status == 1  # one slide failed, reported, the others predicted
    captured = capsys.readouterr()
    rows = list(csv.DictReader(out.read_text().splitlines()))
    assert [Path(r["slide"]).name for r in rows] == [Path(s).name for s in [*slides, real]]
    assert all(abs(float(r["p_normal"]) + float(r["p_tumour"]) - 1) < 1e-5 for r in rows)
    by_name = {Path(r["slide"]).name: r for r in rows}
    for path in slides:  # synthetic slides from the training scanners
        assert float(by_name[Path(path).name]["profile_distance"]) < 1.0
        assert by_name[Path(path).name]["unlike_training"] == "0"
    assert float(by_name[Path(real).name]["profile_distance"]) > 1.0
    assert by_name[Path(real).name]["unlike_training"] == "1"
    assert "cmu-1-small-region.svs: scanner unlike every training site - nearest" in captured.err


def test_train_command_learns_from_unlabelled_reference_rescans(
    small_benchmark: tuple[ShortcutConfig, ShortcutData], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two test_ood patients (scanned on every scanner) become an unlabelled reference set: `--loss auto`
    leaves the default (reference re-scans alone do not switch it), `--loss robust-paired` trains with
    them, and only those six slides feed the paired-scan term."""
    config, _ = small_benchmark
    source = Path(config.work_dir) / "cohort" / "cohort.csv"
    rows = list(csv.DictReader(source.read_text().splitlines()))
    reference = sorted({r["patient"] for r in rows if r["split"] == "test_ood"})[:2]
    for row in rows:
        for key in ("path", "ground_truth"):
            row[key] = str((source.parent / row[key]).resolve())
        if row["patient"] in reference:
            row["split"], row["label"] = "reference", ""
    cohort_csv = tmp_path / "with_reference.csv"
    with open(cohort_csv, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    model = tmp_path / "model"
    cache = str(Path(config.work_dir) / "features")
    table_rows = read_cohort_table(cohort_csv).split(TRAIN, REFERENCE)
    assert resolve_preset("auto", table_rows) == DEFAULT_PRESET
    args = [
        *_train_args(cohort_csv, model, cache, epochs=4),
        "--loss",
        "robust-paired",
        "--harmonise",
        "none",
    ]
    assert cli_main(args) == 0
    assert "loss configuration: robust-paired\n" in capsys.readouterr().out
    head = TrainedHead.load(model)
    assert head.config.losses["paired_scan"] == 3.0 and head.label_names == ["normal", "tumour"]
    assert head.harmonisation() is None and head.config.format_version == 1  # the slides as scanned
    assert head.config.metrics["paired_scan_slides"] == 6
    assert head.config.metrics["train_slides"] == sum(r["split"] == "train" for r in rows)


def test_train_command_harmonises_and_predict_applies_it_again(
    small_benchmark: tuple[ShortcutConfig, ShortcutData], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, data = small_benchmark
    cohort_csv = Path(config.work_dir) / "cohort" / "cohort.csv"
    cache = str(Path(config.work_dir) / "features")
    model = tmp_path / "model"
    refused = [*_train_args(cohort_csv, model, cache, epochs=2), "--harmonise", "auto", "--loss", "augment"]
    assert cli_main(refused) == 2
    assert "needs scanner-swapped views" in capsys.readouterr().err and not model.exists()
    assert cli_main([*_train_args(cohort_csv, model, cache, epochs=3), "--harmonise", "Z"]) == 2
    assert "no site 'Z'" in capsys.readouterr().err
    args = [*_train_args(cohort_csv, model, cache, epochs=3), "--harmonise", "auto", "--loss", "robust-site"]
    assert cli_main(args) == 0
    head = TrainedHead.load(model)
    harmonise = head.harmonisation()
    assert harmonise is not None and harmonise.site == "C"  # the softest synthetic scanner
    assert head.config.format_version == 2 and head.config.training["validate_on_views"] is False
    slide = data.table.split("test_ood")[0].path
    out = tmp_path / "pred.csv"
    assert cli_main(["predict", str(model), slide, "--out", str(out), "--cache", cache]) == 0
    predicted = next(csv.DictReader(out.read_text().splitlines()))
    # predict embedded the slide harmonised: the same probabilities as the head on harmonised features
    from napari_wsirobust.features import slide_features
    from napari_wsirobust.mil import extract_config_for

    extract = extract_config_for(head, cache)
    assert extract.harmonise == harmonise
    feats = slide_features(slide, extract, embed=False)
    assert feats is not None  # already in the cache, under the harmonised key
    expected = head.predict(feats[0].features).probabilities
    assert float(predicted["p_tumour"]) == pytest.approx(float(expected[1]), abs=1e-5)
    unharmonised = slide_features(slide, replace(extract, harmonise=None), embed=False)
    assert unharmonised is not None and not np.allclose(
        unharmonised[0].features, feats[0].features, atol=1e-3
    )
