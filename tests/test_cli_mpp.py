"""``--mpp`` and the cohort CSV's ``mpp`` column on every command that reads slides: a slide without a
pixel size is refused with a message naming them, and read with the value given otherwise."""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from napari_wsirobust.cli import main
from napari_wsirobust.features import read_feature_h5
from napari_wsirobust.io import MissingMPPWarning
from napari_wsirobust.mil import TrainedHead
from napari_wsirobust.models import DEMO_MODEL_DIR

MPP = "0.5"  # the slides' true pixel size


@pytest.fixture(autouse=True)
def _quiet_missing_mpp() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        yield


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One feature cache for the module: a slide is embedded once, whichever command comes first."""
    return str(tmp_path_factory.mktemp("mpp-cache"))


def _with_mpp_column(source: Path, out: Path, values: dict[int, str]) -> Path:
    """A copy of the cohort CSV ``source`` (absolute paths) with an mpp column: ``values`` by row index."""
    rows = list(csv.DictReader(source.read_text().splitlines()))
    for i, row in enumerate(rows):
        row["path"] = str((source.parent / row["path"]).resolve())
        row["mpp"] = values.get(i, "")
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def _names_the_options(text: str) -> bool:
    return "has no pixel size" in text and "--mpp" in text and "mpp column" in text


def test_extract_without_mpp_fails_and_with_it_succeeds(
    cohort_without_mpp: Path, cache: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["extract", str(cohort_without_mpp), "--cache", cache, "--workers", "0"]
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "6 slide(s): 6 failed" in out and _names_the_options(out)
    assert main([*args, "--mpp", MPP]) == 0
    assert "6 slide(s): 6 extracted" in capsys.readouterr().out


@pytest.mark.slow
def test_extract_sends_the_mpp_with_each_job_to_the_cluster(
    cohort_without_mpp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides = sorted(str(p) for p in cohort_without_mpp.parent.glob("*.tiff"))[:2]
    args = ["extract", *slides, "--cache", str(tmp_path / "cache"), "--workers", "1", "--mpp", MPP]
    assert main(args) == 0
    assert "2 slide(s): 2 extracted" in capsys.readouterr().out


def test_cohort_csv_mpp_column_wins_over_the_command_line(
    cohort_without_mpp: Path, cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    listed = _with_mpp_column(cohort_without_mpp, tmp_path / "with_mpp.csv", {0: "0.5", 1: " 0.25 "})
    h5 = tmp_path / "h5"
    args = ["extract", str(listed), "--cache", cache, "--workers", "0", "--h5-dir", str(h5)]
    assert main([*args, "--mpp", "0.4"]) == 0
    capsys.readouterr()
    level0_mpp = {p.stem: read_feature_h5(p).attrs["level0_mpp"] for p in h5.glob("*.h5")}
    assert level0_mpp == {
        "nompp0_A": 0.5,
        "nompp1_A": 0.25,
        **{f"nompp{i}_{'AB'[(i // 2) % 2]}": 0.4 for i in range(2, 6)},
    }
    _with_mpp_column(cohort_without_mpp, listed, dict.fromkeys(range(6), "0.5"))
    assert main(["profiles", str(listed), "--out", str(tmp_path / "p.json")]) == 0  # no --mpp needed
    _with_mpp_column(cohort_without_mpp, listed, {3: "-1"})
    assert main(args) == 2
    assert "with_mpp.csv, line 5: mpp '-1' is not a pixel size" in capsys.readouterr().err


def test_invalid_mpp_option_is_refused(cohort_without_mpp: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for value in ("0", "-0.5", "nan", "abc", "100"):
        with pytest.raises(SystemExit) as exit_info:
            main(["profiles", str(cohort_without_mpp), "--mpp", value])
        assert exit_info.value.code == 2
        assert f"argument --mpp: {value!r} is not a pixel size" in capsys.readouterr().err


def test_train_without_mpp_fails_and_with_it_succeeds(
    cohort_without_mpp: Path, cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    args = ["train", str(cohort_without_mpp), "--out", str(model), "--epochs", "2", "--cache", cache]
    for harmonise in ("auto", "none"):  # colour profiles first, or straight to embedding
        assert main([*args, "--workers", "0", "--harmonise", harmonise]) == 2
        assert _names_the_options(capsys.readouterr().err)
    assert not model.exists()
    assert main([*args, "--workers", "0", "--mpp", MPP]) == 0  # harmonised (auto): both read with it
    assert TrainedHead.load(model).config.harmonise["site"] in {"A", "B"}


@pytest.mark.slow
def test_train_sends_the_mpp_to_the_cluster(
    cohort_without_mpp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = tmp_path / "model"
    args = ["train", str(cohort_without_mpp), "--out", str(model), "--epochs", "1", "--harmonise", "none"]
    assert main([*args, "--cache", str(tmp_path / "cache"), "--workers", "1", "--mpp", MPP]) == 0
    assert TrainedHead.load(model).label_names == ["normal", "tumour"]


def test_predict_without_mpp_fails_and_with_it_succeeds(
    cohort_without_mpp: Path, cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slides = sorted(str(p) for p in cohort_without_mpp.parent.glob("*.tiff"))[:2]
    out = tmp_path / "pred.csv"
    args = ["predict", str(DEMO_MODEL_DIR), *slides, "--out", str(out), "--cache", cache]
    assert main(args) == 1 and not out.exists()
    assert _names_the_options(capsys.readouterr().err)
    assert main([*args, "--mpp", MPP]) == 0
    assert len(list(csv.DictReader(out.read_text().splitlines()))) == 2


def test_diagnose_without_mpp_fails_and_with_it_succeeds(
    cohort_without_mpp: Path, cache: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["diagnose", str(cohort_without_mpp), "--model", str(DEMO_MODEL_DIR), "--splits", "val"]
    args += ["--out", str(tmp_path), "--cache", cache]
    assert main(args) == 2
    assert _names_the_options(capsys.readouterr().err)
    assert main([*args, "--mpp", MPP]) == 0
    assert json.loads((tmp_path / "diagnostics.json").read_text())["n_slides"] == 2


def test_profiles_without_mpp_fails_and_with_it_succeeds(
    cohort_without_mpp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "profiles.json"
    assert main(["profiles", str(cohort_without_mpp), "--out", str(out)]) == 2
    assert _names_the_options(capsys.readouterr().err) and not out.exists()
    assert main(["profiles", str(cohort_without_mpp), "--out", str(out), "--mpp", MPP]) == 0
    assert sorted(json.loads(out.read_text())["profiles"]) == ["A", "B"]


def test_info_reads_the_slide_with_the_mpp(
    cohort_without_mpp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = str(next(cohort_without_mpp.parent.glob("*.tiff")))
    assert main(["info", slide, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["mpp_source"] == "missing"
    assert main(["info", slide, "--json", "--mpp", "0.25"]) == 0
    meta = json.loads(capsys.readouterr().out)
    assert (meta["mpp_x"], meta["mpp_source"]) == (0.25, "override")
