"""Tiles over damaged file tiles are left out of analysis, listed, cached as such, and a slide with
too many of them is refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_wsirobust.analysis import AnalysisRequest, Resources, analyse_region
from napari_wsirobust.errors import WsiRobustError
from napari_wsirobust.features import FeatureCache, TooManyUnreadableTilesError, run_to_completion
from napari_wsirobust.io import DamagedTileWarning
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.tiling import Scope

RESOURCES = Resources()


def _analyse(slide: Path, cache: Path, **kw: object):
    request = AnalysisRequest(str(slide), str(demo_model_dir()), Scope.whole(), cache_dir=str(cache), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        return run_to_completion(analyse_region(request, RESOURCES))


def test_tiles_over_a_damaged_file_tile_are_excluded_listed_and_cached(
    analysis_slide: Path, damaged_copy, tmp_path: Path
) -> None:
    path = damaged_copy(analysis_slide, [19])  # file tile row 2, column 3: x 768-1024, y 512-768
    cache = tmp_path / "cache"
    result = _analyse(path, cache)
    excluded = result.excluded
    assert excluded is not None and 1 <= excluded.count <= 4
    size = result.grid.tile_size_level0[0]
    for x, y in excluded.coords:  # every excluded tile overlaps the damaged file tile
        assert x < 1024 and x + size > 768 and y < 768 and y + size > 512
    kept = {tuple(c) for c in result.grid.coords_level0}
    assert not kept & {tuple(c) for c in excluded.coords}
    assert len(result.attention) == len(result.grid)
    assert "left out: they overlap damaged file tiles" in excluded.describe()
    entries = list(cache.rglob("*.h5"))
    assert len(entries) == 1
    with h5py.File(entries[0]) as f:
        assert len(f["excluded_coords"]) == excluded.count
        assert not np.isnan(f["features"][:]).any()
    again = _analyse(path, cache)  # from the cache: the same tiles are left out, nothing re-embedded
    assert again.n_embedded == 0 and again.excluded.count == excluded.count
    np.testing.assert_allclose(again.attention, result.attention, rtol=1e-5)
    assert FeatureCache(cache).load(entries[0].stem) is not None


def test_a_slide_with_too_many_unreadable_tiles_is_refused(
    analysis_slide: Path, damaged_copy, tmp_path: Path
) -> None:
    path = damaged_copy(analysis_slide, list(range(24)))  # the top half of level 0; overviews intact
    with pytest.raises(
        TooManyUnreadableTilesError, match=r"damaged_tumour_B.tiff: \d+ of \d+ tissue tiles \(\d+%\)"
    ):
        _analyse(path, tmp_path / "cache")
    result = _analyse(path, tmp_path / "cache", max_unreadable_share=0.9)
    assert result.excluded.share > 0.2 and len(result.grid) > 0


def test_a_slide_whose_every_tissue_tile_is_damaged_gets_a_clear_error(
    analysis_slide: Path, damaged_copy, tmp_path: Path
) -> None:
    path = damaged_copy(analysis_slide, list(range(48)))
    with pytest.raises(WsiRobustError, match="damaged_tumour_B.tiff: .*overlaps damaged file tiles"):
        _analyse(path, tmp_path / "cache")
