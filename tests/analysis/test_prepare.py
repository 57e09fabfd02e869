"""Per-slide work in the background: the analysis finds it ready, waits for it when it is running
(and says so), and the result is the same as before the work moved (pinned figures below)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.analysis import (
    AnalysisProgress,
    AnalysisRequest,
    BackgroundPreparation,
    PrepRequest,
    Resources,
    analyse_region,
    prepare_slide,
)
from napari_wsirobust.features import FeatureCache, forget_in_memory
from napari_wsirobust.features import slide_prep as slide_prep_module
from napari_wsirobust.io import open_slide
from napari_wsirobust.mil import TrainedHead
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.stain import Harmonisation
from napari_wsirobust.tiling import Scope, detect_tissue

# Measured on the analysis_slide fixture with the code from before the per-slide work was kept (tissue
# detected three times per slide, plan memoised in memory only), demo head, whole slide.
PINNED_PLAN_SOURCE = {
    "hematoxylin_od": [0.6754075026413826, 0.6993902661552674, 0.23383319050766704],
    "eosin_od": [0.08391337822157285, 0.9925266756532866, 0.08859651839705135],
    "background_rgb": [250.0, 237.0, 231.0],
    "concentration_p50": [0.050405756224042045, 0.34518536063742167],
    "concentration_p99": [1.272283145312738, 0.7168488354969478],
    "sharpness": 161.47024175724553,
    "n_pixels": 1611469,
    "jpeg_quality": 80,
}
PINNED_BLUR_SIGMA = 0.571929931640625
PINNED_TILES = 35
PINNED_TUMOUR_P = 0.9956405162811279


@pytest.fixture()
def fresh_memory() -> Iterator[None]:
    forget_in_memory()
    yield
    forget_in_memory()


def _analyse(
    slide: Path, cache: Path, resources: Resources, on_step: Callable[[AnalysisProgress], None] | None = None
) -> tuple[list[AnalysisProgress], object]:
    request = AnalysisRequest(str(slide), str(demo_model_dir()), Scope.whole(), cache_dir=str(cache))
    gen = analyse_region(request, resources)
    steps: list[AnalysisProgress] = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            return steps, stop.value
        if on_step is not None:
            on_step(steps[-1])


def _messages(steps: list[AnalysisProgress], stage: str) -> list[str]:
    return [s.message for s in steps if s.stage == stage]


def test_prepared_slide_is_analysed_without_redoing_its_work_and_as_before(
    analysis_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_memory: None
) -> None:
    resources = Resources()
    prepare_slide(PrepRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(tmp_path)), resources)
    forget_in_memory()  # as after a restart: only the disk entries are left
    monkeypatch.setattr(slide_prep_module, "detect_tissue", _must_not_run)
    monkeypatch.setattr(Harmonisation, "plan_for", _must_not_run)
    steps, result = _analyse(analysis_slide, tmp_path, resources)
    assert _messages(steps, "tissue") == ["tissue map of this slide at hand"]
    assert _messages(steps, "plan") == ["matching the slide's colours to site C"]
    assert [s.stage for s in steps][:3] == ["loading", "tissue", "plan"]
    assert len(result.grid) == PINNED_TILES
    assert result.prediction.probabilities[1] == pytest.approx(PINNED_TUMOUR_P, abs=1e-4)
    with open_slide(analysis_slide) as slide:
        head = TrainedHead.load(demo_model_dir())
        plan = FeatureCache(tmp_path).prep.plan(slide, head.harmonisation())
    source = plan.source.to_dict()
    assert source.keys() == PINNED_PLAN_SOURCE.keys()
    for name, pinned in PINNED_PLAN_SOURCE.items():
        assert np.ravel(source[name]) == pytest.approx(np.ravel(pinned), rel=1e-9), name
    assert plan.blur_sigma_px == pytest.approx(PINNED_BLUR_SIGMA, rel=1e-9)


def test_unprepared_slide_gives_the_same_result_and_says_what_it_computes(
    analysis_slide: Path, tmp_path: Path, fresh_memory: None
) -> None:
    steps, result = _analyse(analysis_slide, tmp_path / "cold", Resources())
    assert _messages(steps, "tissue") == ["finding tissue"]
    assert _messages(steps, "plan") == ["estimating the slide's harmonisation plan (to site C)"]
    assert len(result.grid) == PINNED_TILES
    assert result.prediction.probabilities[1] == pytest.approx(PINNED_TUMOUR_P, abs=1e-4)
    forget_in_memory()
    _, again = _analyse(analysis_slide, tmp_path / "second", Resources())
    np.testing.assert_allclose(again.features, result.features, atol=1e-5)  # same tiles, same plan


def test_analysis_waits_for_the_background_preparation_and_says_so(
    analysis_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_memory: None
) -> None:
    release = threading.Event()
    calls: list[int] = []

    def slow_detect(slide, config):  # type: ignore[no-untyped-def]
        calls.append(1)
        release.wait(20)
        return detect_tissue(slide, config)

    monkeypatch.setattr(slide_prep_module, "detect_tissue", slow_detect)
    resources = Resources()
    background = BackgroundPreparation(resources)
    job = background.submit(PrepRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(tmp_path)))
    assert (
        background.submit(PrepRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(tmp_path)))
        is job
    )
    deadline = time.monotonic() + 20
    while not calls and time.monotonic() < deadline:
        time.sleep(0.01)
    safety = threading.Timer(20, release.set)
    safety.start()
    # the background detection is held until the analysis has said what it does about the tissue map
    steps, result = _analyse(
        analysis_slide, tmp_path, resources, lambda step: release.set() if step.stage == "tissue" else None
    )
    safety.cancel()
    job.result(timeout=60)
    background.shutdown()
    assert _messages(steps, "tissue") == ["waiting for the tissue map started in the background"]
    assert len(calls) == 1  # computed once, by the background job
    assert len(result.grid) == PINNED_TILES


def test_background_failures_are_left_to_the_analysis(tmp_path: Path, fresh_memory: None) -> None:
    background = BackgroundPreparation(Resources())
    missing = PrepRequest(str(tmp_path / "gone.svs"), str(demo_model_dir()), cache_dir=str(tmp_path))
    assert background.submit(missing).result(timeout=30) is None  # logged, not raised
    assert background.submit(missing) is not None  # a failed request may be tried again
    background.shutdown()


def _must_not_run(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("must not run: the slide was prepared")
