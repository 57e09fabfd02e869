"""The unlike-training check in an analysis: a slide from a training scanner passes, a real slide from a
scanner the demo head never saw is flagged with its nearest site, and the exports carry both figures."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from napari_wsirobust.analysis import (
    AnalysisRequest,
    Resources,
    analyse_region,
    write_geojson,
    write_slide_predictions_csv,
)
from napari_wsirobust.features import run_to_completion
from napari_wsirobust.mil import TrainedHead
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.tiling import Scope


@pytest.fixture(scope="module")
def synthetic(analysis_slide: Path, analysis_cache: Path):  # type: ignore[no-untyped-def]
    request = AnalysisRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(analysis_cache))
    return run_to_completion(analyse_region(request, Resources()))


@pytest.fixture(scope="module")
def real(shared_slides: Path, analysis_cache: Path):  # type: ignore[no-untyped-def]
    request = AnalysisRequest(
        str(shared_slides / "cmu-1-small-region.svs"),
        str(demo_model_dir()),
        Scope.whole(),
        cache_dir=str(analysis_cache),
    )
    return run_to_completion(analyse_region(request, Resources()))


def test_the_demo_head_saves_its_training_sites_profiles() -> None:
    assert sorted(TrainedHead.load(demo_model_dir()).site_profiles()) == ["A", "B", "C"]


def test_a_slide_from_a_training_scanner_is_not_flagged(synthetic) -> None:  # type: ignore[no-untyped-def]
    check = synthetic.scanner
    assert check is not None and check.distance < check.threshold
    assert not check.unlike_training and check.warning() == ""


def test_a_real_slide_from_another_scanner_is_flagged_with_its_nearest_site(real) -> None:  # type: ignore[no-untyped-def]
    check = real.scanner
    assert check is not None and check.unlike_training and check.distance > check.threshold
    assert check.nearest_site in {"A", "B", "C"}
    assert check.warning().startswith(f"scanner unlike every training site - nearest {check.nearest_site}")


def test_exports_carry_the_profile_distance_and_the_flag(synthetic, real, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    with open(write_slide_predictions_csv([synthetic, real], tmp_path / "slides.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert [r["unlike_training"] for r in rows] == ["0", "1"]
    assert float(rows[0]["profile_distance"]) == pytest.approx(synthetic.scanner.distance, abs=1e-4)
    assert float(rows[1]["profile_distance"]) == pytest.approx(real.scanner.distance, abs=1e-4)
    data = json.loads(write_geojson(real, tmp_path / "real.geojson", top_k=2).read_text())
    assert data["properties"]["unlike_training"] == 1
    assert data["properties"]["nearest_site"] == real.scanner.nearest_site
    assert data["properties"]["profile_distance"] == pytest.approx(real.scanner.distance)
    top = [f for f in data["features"] if f["properties"]["objectType"] == "annotation"]
    assert top[0]["properties"]["measurements"]["unlike training"] == 1.0
