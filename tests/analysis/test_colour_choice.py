"""The model's colour mode decides how slides are read for analysis and prediction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from napari_wsirobust.analysis import AnalysisRequest, Resources, analyse_region
from napari_wsirobust.analysis import region as region_module
from napari_wsirobust.features import ExtractConfig, run_to_completion, slide_features
from napari_wsirobust.mil import TrainedHead, extract_config_for
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.tiling import Scope


@pytest.fixture
def srgb_model(tmp_path: Path) -> Path:
    """The bundled demo head, saved as trained on sRGB slides."""
    folder = tmp_path / "srgb-model"
    shutil.copytree(demo_model_dir(), folder)
    for config in folder.rglob("config.json"):
        data = json.loads(config.read_text())
        data["color"] = "srgb"
        config.write_text(json.dumps(data))
    return folder


def test_analysis_reads_the_slide_in_the_models_colour(
    srgb_model: Path, profiled_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []
    original = region_module.open_slide

    def recording(path, mpp=None, backend="auto", color="as-scanned"):  # type: ignore[no-untyped-def]
        opened.append(color)
        return original(path, mpp=mpp, backend=backend, color=color)

    monkeypatch.setattr(region_module, "open_slide", recording)
    resources = Resources()
    results = {}
    for model in (srgb_model, demo_model_dir()):
        request = AnalysisRequest(
            str(profiled_slide), str(model), Scope.whole(), cache_dir=str(tmp_path / "c")
        )
        results[str(model)] = run_to_completion(analyse_region(request, resources))
    assert opened == ["srgb", "as-scanned"]
    entries = list((tmp_path / "c").rglob("*.h5"))
    assert len(entries) == 2  # the two colour modes are cached apart
    srgb, scanned = results[str(srgb_model)], results[str(demo_model_dir())]
    assert abs(srgb.probability - scanned.probability) > 1e-4 or len(srgb.grid) != len(scanned.grid)


def test_prediction_extracts_in_the_models_colour(srgb_model: Path) -> None:
    assert extract_config_for(TrainedHead.load(srgb_model), None).color == "srgb"
    assert extract_config_for(TrainedHead.load(demo_model_dir()), None).color == "as-scanned"


def test_training_features_leave_out_damaged_tiles(
    analysis_slide: Path, damaged_copy, tmp_path: Path
) -> None:
    path = damaged_copy(analysis_slide, [19])
    (plain,) = slide_features(str(path), ExtractConfig(cache_dir=str(tmp_path / "c")))  # type: ignore[misc]
    assert plain.excluded is not None and plain.excluded.count >= 1
    assert len(plain.grid) == len(plain.features) == plain.excluded.total - plain.excluded.count
    assert not (plain.features != plain.features).any()  # no NaN rows reach the bags
