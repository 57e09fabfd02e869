"""Layer data aligned to the slide in µm; GeoJSON/CSV exports that QuPath and pandas can read."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.analysis import (
    AnalysisRequest,
    Resources,
    analyse_region,
    analysis_layers,
    grid_image,
    tile_rectangles_um,
    write_geojson,
    write_slide_predictions_csv,
    write_tile_csv,
)
from napari_wsirobust.features import run_to_completion
from napari_wsirobust.models import demo_model_dir


@pytest.fixture(scope="module")
def result(analysis_slide: Path, analysis_cache: Path):
    request = AnalysisRequest(str(analysis_slide), str(demo_model_dir()), cache_dir=str(analysis_cache))
    return run_to_completion(analyse_region(request, Resources()))


def test_grid_image_cells_sit_on_the_tile_centres(result) -> None:
    grid = result.grid
    values = np.linspace(0.1, 1.0, len(grid))
    image, scale, translate = grid_image(grid, values)
    r0, c0 = grid.rows.min(), grid.cols.min()
    world = np.column_stack(
        [translate[0] + (grid.rows - r0) * scale[0], translate[1] + (grid.cols - c0) * scale[1]]
    )
    np.testing.assert_allclose(world, grid.centres_um, atol=1e-6)
    np.testing.assert_allclose(image[grid.rows - r0, grid.cols - c0], values, rtol=1e-6)
    assert (image == 0).sum() == image.size - len(grid)  # background stays 0 (transparent)


def test_top_tile_rectangles_enclose_their_tiles(result) -> None:
    top = result.top_k(5)
    rects = tile_rectangles_um(result.grid, top)
    for rect, i in zip(rects, top):
        cy, cx = result.grid.centres_um[i]
        assert rect[:, 0].min() < cy < rect[:, 0].max() and rect[:, 1].min() < cx < rect[:, 1].max()
        side = rect[:, 0].max() - rect[:, 0].min()
        assert side == pytest.approx(224 * 0.5)  # 224 px tiles at 0.5 µm/px


def test_analysis_layers(result) -> None:
    layers = analysis_layers(result, top_k=4, name="s")
    kinds = [(kw["name"], t) for _, kw, t in layers]
    assert kinds == [
        ("s attention", "image"),
        ("s tile score (tumour)", "image"),
        ("s top 4 tiles", "shapes"),
    ]
    shapes, kw, _ = layers[2]
    assert list(kw["features"]["rank"]) == [1, 2, 3, 4]
    assert np.all(np.diff(kw["features"]["attention"]) <= 0)
    assert len(shapes) == 4


def test_top_tile_rank_labels_sit_inside_their_own_box(result) -> None:
    # anchored at a corner, a rank sat on the shared edge of two adjacent top tiles (whose box?)
    shapes_layer = pytest.importorskip("napari.layers").Shapes
    rects, kw, _ = analysis_layers(result, top_k=8, name="s")[2]
    layer = shapes_layer(rects, **{k: v for k, v in kw.items() if k != "units"})
    coords = layer._view_text_coords[0]
    assert len(coords) == len(rects) == 8
    for (y, x), rect in zip(coords, rects):
        inside = [rect[:, 0].min() < y < rect[:, 0].max() and rect[:, 1].min() < x < rect[:, 1].max()]
        others = [
            other[:, 0].min() <= y <= other[:, 0].max() and other[:, 1].min() <= x <= other[:, 1].max()
            for other in rects
            if other is not rect
        ]
        assert inside == [True] and not any(others)


def test_geojson_for_qupath(result, tmp_path: Path) -> None:
    path = write_geojson(result, tmp_path / "out.geojson", top_k=3)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection"
    tiles = [f for f in data["features"] if f["properties"]["objectType"] == "tile"]
    top = [f for f in data["features"] if f["properties"]["objectType"] == "annotation"]
    assert len(tiles) == len(result.grid) and len(top) == 3
    ring = np.array(top[0]["geometry"]["coordinates"][0])
    assert ring.shape == (5, 2) and (ring[0] == ring[-1]).all()
    i = result.top_k(1)[0]
    assert ring[0].tolist() == [result.grid.x0[i], result.grid.y0[i]]  # level-0 pixels, x first
    assert (ring >= 0).all() and ring[:, 0].max() <= 2048 and ring[:, 1].max() <= 1536
    m = top[0]["properties"]["measurements"]
    assert m["attention"] == pytest.approx(float(result.attention.max()))
    assert set(m) >= {"attention", "attention percentile", "p(normal)", "p(tumour)"}


def test_tile_and_prediction_csvs(result, tmp_path: Path) -> None:
    with open(write_tile_csv(result, tmp_path / "tiles.csv")) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(result.grid)
    att = np.array([float(r["attention"]) for r in rows])
    np.testing.assert_allclose(att, result.attention, rtol=1e-4)
    with open(write_slide_predictions_csv([result, result], tmp_path / "slides.csv")) as fh:
        slides = list(csv.DictReader(fh))
    assert len(slides) == 2 and slides[0]["prediction"] == "tumour" and slides[0]["scope"] == "whole"
    assert float(slides[0]["p_tumour"]) > 0.5
    with pytest.raises(ValueError, match="no analyses"):
        write_slide_predictions_csv([], tmp_path / "none.csv")
