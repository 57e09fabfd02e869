"""extract and predict on a slide with damaged file tiles: they finish, warn, list what was left out;
a slide with too many unreadable tiles is refused for prediction."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import h5py
import pytest

from napari_wsirobust.cli import main
from napari_wsirobust.io import DamagedTileWarning
from napari_wsirobust.models import demo_model_dir


@pytest.fixture(autouse=True)
def _quiet_damage_warnings():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        yield


def test_extract_and_predict_leave_out_damaged_tiles_and_say_so(
    analysis_slide: Path, damaged_copy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = damaged_copy(analysis_slide, [19])
    cache, h5_dir = tmp_path / "cache", tmp_path / "h5"
    assert (
        main(["extract", str(slide), "--cache", str(cache), "--workers", "0", "--h5-dir", str(h5_dir)]) == 0
    )
    err = capsys.readouterr().err
    assert "warning   damaged_tumour_B.tiff:" in err and "left out: they overlap damaged file tiles" in err
    with h5py.File(h5_dir / "damaged_tumour_B.h5") as f:
        n_excluded = len(f["excluded_coords"])
        assert 1 <= n_excluded <= 4 and len(f["features"]) == len(f["coords"]) > 30
    out_csv = tmp_path / "predictions.csv"
    code = main(["predict", str(demo_model_dir()), str(slide), "--out", str(out_csv), "--cache", str(cache)])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert f"{n_excluded} of " in captured.err and "left out" in captured.err
    with open(out_csv, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 1


def test_predict_refuses_a_slide_with_too_many_unreadable_tiles(
    analysis_slide: Path, damaged_copy, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slide = damaged_copy(analysis_slide, list(range(24)))
    args = ["predict", str(demo_model_dir()), str(slide), "--out", str(tmp_path / "p.csv")]
    assert main([*args, "--cache", str(tmp_path / "cache")]) == 1
    err = capsys.readouterr().err
    assert "failed    damaged_tumour_B.tiff: damaged_tumour_B.tiff:" in err and "are unreadable" in err
    assert "Traceback" not in err
    assert main([*args, "--cache", str(tmp_path / "cache"), "--max-unreadable", "0.9"]) == 0
