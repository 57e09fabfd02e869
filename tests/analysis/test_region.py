"""analyse_region: scopes, cache reuse, a heatmap that finds the tumour, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.analysis import (
    AnalysisError,
    AnalysisRequest,
    NoTissueError,
    Resources,
    analyse_region,
    visible_rect_um,
)
from napari_wsirobust.features import run_to_completion
from napari_wsirobust.mil.bags import tile_tumour_fraction
from napari_wsirobust.mil.metrics import roc_auc
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.synthetic import ground_truth_path_for
from napari_wsirobust.tiling import Scope

RESOURCES = Resources()


def _run(slide: Path, cache: Path, scope: Scope | None = None, **kw: object):
    request = AnalysisRequest(
        str(slide), str(demo_model_dir()), scope or Scope.whole(), cache_dir=str(cache), **kw
    )
    return run_to_completion(analyse_region(request, RESOURCES))


def test_whole_slide_attention_finds_the_tumour(analysis_slide: Path, analysis_cache: Path) -> None:
    result = _run(analysis_slide, analysis_cache)
    assert len(result.grid) > 30
    assert result.predicted_label == "tumour"
    assert np.isclose(result.attention.sum(), 1.0, atol=1e-5)
    truth = tile_tumour_fraction(str(ground_truth_path_for(analysis_slide)), result.grid) > 0.5
    assert 0 < truth.sum() < len(truth)
    # quantitative: the attention ranks tumour tiles above normal ones
    assert roc_auc(truth.astype(int), result.attention) > 0.8
    ranks = result.attention_rank()
    assert ranks.max() == 1.0 and ranks.min() > 0
    assert truth[result.top_k(4)].mean() >= 0.75


def test_rect_scope_keeps_tiles_inside_and_reuses_the_cache(
    analysis_slide: Path, analysis_cache: Path
) -> None:
    _run(analysis_slide, analysis_cache)  # make sure every tile is cached (also when run alone)
    whole = _run(analysis_slide, analysis_cache)
    assert whole.n_embedded == 0
    rect = Scope.rect(0.0, 0.0, 400.0, 500.0)
    part = _run(analysis_slide, analysis_cache, rect)
    assert 0 < len(part.grid) < len(whole.grid)
    assert part.n_embedded == 0  # every tile of the region was embedded for the whole slide
    centres = part.grid.centres_um
    assert rect.contains(centres[:, 0], centres[:, 1]).all()


def test_polygon_scope(analysis_slide: Path, analysis_cache: Path) -> None:
    triangle = np.array([[0.0, 0.0], [0.0, 1000.0], [760.0, 0.0]])
    result = _run(analysis_slide, analysis_cache, Scope.polygons([triangle]))
    centres = result.grid.centres_um
    assert len(centres) > 0
    assert (centres[:, 0] / 760.0 + centres[:, 1] / 1000.0 <= 1.0).all()


def test_a_region_without_tissue_is_refused_with_a_message(
    analysis_slide: Path, analysis_cache: Path
) -> None:
    with pytest.raises(NoTissueError, match="no tissue tiles in the chosen region"):
        _run(analysis_slide, analysis_cache, Scope.rect(-500.0, -500.0, -100.0, -100.0))


def test_missing_model_folder(analysis_slide: Path, tmp_path: Path) -> None:
    request = AnalysisRequest(str(analysis_slide), str(tmp_path / "nope"), cache_dir=str(tmp_path))
    with pytest.raises(AnalysisError, match="model folder not found"):
        run_to_completion(analyse_region(request, RESOURCES))


def test_an_encoder_without_local_weights_is_refused_with_a_message(
    analysis_slide: Path, tmp_path: Path
) -> None:
    from napari_wsirobust.encoders import EncoderWeightsError

    request = AnalysisRequest(
        str(analysis_slide), str(demo_model_dir()), encoder="h0-mini", cache_dir=str(tmp_path)
    )
    with pytest.raises(EncoderWeightsError, match="h0-mini"):
        run_to_completion(analyse_region(request, RESOURCES))


def test_cancelling_leaves_the_cache_usable(analysis_slide: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    gen = analyse_region(
        AnalysisRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(cache)), RESOURCES
    )
    for progress in gen:
        if progress.stage == "embedding" and progress.done > 0:
            break
    gen.close()
    result = _run(analysis_slide, cache)
    assert result.predicted_label == "tumour"


def test_visible_rect_from_the_camera() -> None:
    assert visible_rect_um((0.0, 100.0, 200.0), (400, 800), 2.0) == (0.0, 0.0, 200.0, 400.0)
    with pytest.raises(ValueError):
        visible_rect_um((0.0, 0.0), (10, 10), 0.0)
