"""The Analyse widget in a real viewer (pytest-qt, under Xvfb): scopes, layers in µm, a heatmap that
finds the tumour, in-place updates, top-tile stepping, cancel, errors, exports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.analysis import METADATA_KEY  # noqa: E402
from napari_wsirobust.mil.bags import tile_tumour_fraction  # noqa: E402
from napari_wsirobust.mil.metrics import roc_auc  # noqa: E402
from napari_wsirobust.synthetic import ground_truth_path_for  # noqa: E402
from napari_wsirobust.widgets import analyse as analyse_module  # noqa: E402
from napari_wsirobust.widgets import worker_dock  # noqa: E402
from napari_wsirobust.widgets.analyse import AnalyseWidget, camera_of  # noqa: E402
from napari_wsirobust.widgets.model_list import MODELS  # noqa: E402

pytestmark = pytest.mark.napari
TIMEOUT_MS = 120_000


@pytest.fixture
def setup(make_napari_viewer, analysis_slide: Path, monkeypatch: pytest.MonkeyPatch):
    errors: list[str] = []
    monkeypatch.setattr(analyse_module, "show_error", errors.append)
    monkeypatch.setattr(worker_dock, "show_error", errors.append)  # errors of the job
    viewer = make_napari_viewer()
    (slide_layer,) = viewer.open(str(analysis_slide), plugin="napari-wsirobust")
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    return viewer, widget, slide_layer, errors


def _run(qtbot, widget: AnalyseWidget) -> None:
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _analysis_layers(viewer) -> dict[str, object]:
    return {ly.metadata[METADATA_KEY]["kind"]: ly for ly in viewer.layers if METADATA_KEY in ly.metadata}


def _heatmap_at_tiles(layer, grid) -> np.ndarray:
    """Heatmap value under each tile centre, read through the layer's own world->data transform."""
    cells = [np.round(layer.world_to_data(c)).astype(int) for c in grid.centres_um]
    return np.array([layer.data[r, c] for r, c in cells])


def test_whole_slide_layers_in_um_and_heatmap_on_the_tumour(qtbot, setup, analysis_slide: Path) -> None:
    viewer, widget, slide_layer, errors = setup
    widget._scope.value = "whole slide"
    _run(qtbot, widget)
    assert not errors
    layers = _analysis_layers(viewer)
    assert set(layers) == {"attention", "score", "top_tiles"}
    result = widget.current_result()
    grid = result.grid
    heat = layers["attention"]
    stride_um = grid.stride_level0[0] * grid.mpp[0]
    assert tuple(heat.scale) == pytest.approx((stride_um, stride_um))
    assert [str(u) for u in heat.units] == ["micrometer", "micrometer"]
    # the heatmap cell under every tile centre is that tile (translate is right), and it is high
    # over the ground-truth tumour: AUC of the displayed values against the tumour mask
    values = _heatmap_at_tiles(heat, grid)
    np.testing.assert_allclose(values, result.attention_rank(), rtol=1e-5)
    truth = tile_tumour_fraction(str(ground_truth_path_for(analysis_slide)), grid) > 0.5
    assert roc_auc(truth.astype(int), values) > 0.8
    assert values[truth].mean() > values[~truth].mean() + 0.3
    top = layers["top_tiles"]
    assert heat.visible and top.visible and not layers["score"].visible  # shown a turn after insertion
    assert len(top.data) == 8 and list(top.features["rank"]) == list(range(1, 9))
    low = np.asarray(slide_layer.translate) - 0.25
    high = low + np.array([1536, 2048]) * 0.5
    for rect in top.data:
        assert (rect >= low - 1e-6).all() and (rect <= high + 1e-6).all()
    assert "tumour" in widget._result_label.value


def test_opening_the_dock_prerenders_the_result_text_glyphs(setup) -> None:
    """The top-tile ranks' glyphs are in the canvas font before any run (so the first result layer's
    first paint does not render them); a second warm-up has nothing left to do."""
    from napari_wsirobust.widgets.result_layers import RESULT_TEXT_CHARS, warm_up_glyphs

    viewer, _widget, _slide, _errors = setup
    info = viewer.window._qt_viewer.canvas._font_info
    glyphs = info.font_manager.get_font(info.face)._glyphs
    assert set(RESULT_TEXT_CHARS) <= set(glyphs)
    assert warm_up_glyphs(viewer) == 0


def test_visible_region_then_moved_view_updates_layers_in_place(qtbot, setup) -> None:
    viewer, widget, _, errors = setup
    camera_of(viewer).center = (200.0, 250.0)
    camera_of(viewer).zoom = min(viewer.canvas.size) / 400.0  # about 400 µm across
    widget._scope.value = "visible region"
    _run(qtbot, widget)
    assert not errors
    first = widget.current_result()
    y0, x0, y1, x1 = first.request.scope.rect_um
    assert len(first.grid) > 0
    centres = first.grid.centres_um
    assert (
        (centres[:, 0] >= y0) & (centres[:, 0] <= y1) & (centres[:, 1] >= x0) & (centres[:, 1] <= x1)
    ).all()
    for rect in _analysis_layers(viewer)["top_tiles"].data:
        cy, cx = rect.mean(axis=0)
        assert y0 <= cy <= y1 and x0 <= cx <= x1
    n_layers = len(viewer.layers)
    attention_layer = _analysis_layers(viewer)["attention"]
    camera_of(viewer).center = (400.0, 700.0)
    _run(qtbot, widget)
    second = widget.current_result()
    assert second.request.scope.rect_um != first.request.scope.rect_um
    assert len(viewer.layers) == n_layers  # updated in place, not piled up
    assert _analysis_layers(viewer)["attention"] is attention_layer
    # the layers updated step by step end up showing the second result, where it is
    np.testing.assert_allclose(
        _heatmap_at_tiles(attention_layer, second.grid), second.attention_rank(), rtol=1e-5
    )
    y0, x0, y1, x1 = second.request.scope.rect_um
    top = _analysis_layers(viewer)["top_tiles"]
    np.testing.assert_allclose(top.features["attention"], second.attention[second.top_k(8)])
    for rect in top.data:
        cy, cx = rect.mean(axis=0)
        assert y0 <= cy <= y1 and x0 <= cx <= x1
    overlap = set(zip(first.grid.rows, first.grid.cols)) & set(zip(second.grid.rows, second.grid.cols))
    assert second.n_embedded <= len(second.grid) - len(overlap)  # tiles seen before come from the cache


def test_layers_wait_while_the_user_pans_and_go_in_once_the_view_is_still(qtbot, setup) -> None:
    from qtpy.QtCore import QTimer

    from napari_wsirobust.widgets.gui_steps import HELD_MESSAGE

    viewer, widget, _, errors = setup
    camera = camera_of(viewer)
    camera.center = (200.0, 250.0)
    camera.zoom = min(viewer.canvas.size) / 400.0
    widget._scope.value = "visible region"
    step = [1.0]

    def pan() -> None:  # a user dragging the view back and forth
        step[0] = -step[0]
        cy, cx = camera.center[-2:]
        camera.center = (cy, cx + step[0])

    timer = QTimer()
    timer.timeout.connect(pan)
    timer.start(20)
    try:
        assert widget.run() is not None
        qtbot.waitUntil(lambda: widget._worker is None, timeout=TIMEOUT_MS)  # the result is ready
        qtbot.wait(600)  # still panning: nothing may be inserted meanwhile
        assert _analysis_layers(viewer) == {} and widget.running
        assert widget._status.value == HELD_MESSAGE
    finally:
        timer.stop()
    qtbot.waitUntil(lambda: not widget.running, timeout=10_000)
    assert set(_analysis_layers(viewer)) == {"attention", "score", "top_tiles"} and not errors
    assert widget._status.value.startswith("Done in")


def test_selected_polygon_scope(qtbot, setup) -> None:
    viewer, widget, _, errors = setup
    polygon = np.array([[20.0, 20.0], [20.0, 600.0], [700.0, 300.0]])
    shapes = viewer.add_shapes([polygon], shape_type="polygon", name="region")
    widget._shapes.reset_choices()
    widget._shapes.value = shapes
    widget._scope.value = "selected shapes"
    _run(qtbot, widget)
    assert not errors
    from matplotlib.path import Path as MplPath

    inside = MplPath(polygon).contains_points(widget.current_result().grid.centres_um)
    assert inside.all()
    for rect in _analysis_layers(viewer)["top_tiles"].data:
        assert MplPath(polygon).contains_point(rect.mean(axis=0))


def test_stepping_through_top_tiles_moves_the_camera(qtbot, setup) -> None:
    viewer, widget, _, _ = setup
    widget._scope.value = "whole slide"
    _run(qtbot, widget)
    top = _analysis_layers(viewer)["top_tiles"]
    assert widget.step_top_tile(+1) == 0
    np.testing.assert_allclose(camera_of(viewer).center[-2:], top.data[0].mean(axis=0), atol=1e-3)
    assert widget.step_top_tile(+1) == 1
    np.testing.assert_allclose(camera_of(viewer).center[-2:], top.data[1].mean(axis=0), atol=1e-3)
    assert widget.step_top_tile(-1) == 0
    top.selected_data = {3}
    np.testing.assert_allclose(camera_of(viewer).center[-2:], top.data[3].mean(axis=0), atol=1e-3)


def test_cancel_leaves_no_layers_and_the_widget_usable(
    qtbot, setup, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, widget, _, errors = setup
    monkeypatch.setenv("WSIROBUST_CACHE_DIR", str(tmp_path / "fresh-cache"))  # force embedding
    widget._scope.value = "whole slide"
    assert widget.run() is not None
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "Cancelled" in widget._status.value
    assert not _analysis_layers(viewer) and not errors
    assert widget._run.enabled and not widget._cancel.enabled
    _run(qtbot, widget)
    assert set(_analysis_layers(viewer)) == {"attention", "score", "top_tiles"}


def test_closing_the_slide_during_a_run_shows_no_result_for_it(
    qtbot, setup, analysis_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer, widget, slide_layer, errors = setup
    monkeypatch.setenv("WSIROBUST_CACHE_DIR", str(tmp_path / "fresh-cache"))  # a run that takes a while
    widget._scope.value = "whole slide"
    assert widget.run() is not None
    viewer.layers.remove(slide_layer)  # before the worker can return: results arrive via the event loop
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert "was closed during the run" in widget._status.value and not errors
    assert not _analysis_layers(viewer) and widget.current_result() is None
    (reopened,) = viewer.open(str(analysis_slide), plugin="napari-wsirobust")
    reopened.translate = (100.0, 250.0)  # another place in the world: overlays must follow the slide
    widget._slide.reset_choices()
    widget._slide.value = reopened
    _run(qtbot, widget)
    layers = _analysis_layers(viewer)
    assert set(layers) == {"attention", "score", "top_tiles"}
    top = layers["top_tiles"]
    corners = np.array([top.data_to_world(v)[-2:] for box in top.data for v in box])
    low, high = (np.asarray(v)[-2:] for v in reopened.extent.world)
    assert low[0] >= 99.0 and low[1] >= 249.0  # the slide was really moved
    assert (corners >= low - 1.0).all() and (corners <= high + 1.0).all()  # tiles on the moved slide


def test_errors_are_notified_and_the_widget_stays_usable(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, _, errors = setup
    camera_of(viewer).center = (-5000.0, -5000.0)  # nothing but empty space on the canvas
    camera_of(viewer).zoom = min(viewer.canvas.size) / 200.0
    widget._scope.value = "visible region"
    _run(qtbot, widget)
    assert errors and "no tissue tiles" in errors[-1]
    empty = tmp_path / "empty-model"
    empty.mkdir()
    widget._model.value = MODELS.add("empty", empty)
    widget._scope.value = "whole slide"
    _run(qtbot, widget)
    assert "cannot load the model" in errors[-1]
    widget._scope.value = "selected shapes"
    assert widget.run() is None and "Shapes layer" in errors[-1]
    assert widget._status.value.startswith("Not started:") and "Shapes layer" in widget._status.value
    assert not _analysis_layers(viewer)
    widget._model.value = "bundled demo model"
    widget._scope.value = "whole slide"
    _run(qtbot, widget)
    assert _analysis_layers(viewer)


def test_export_writes_geojson_csvs_and_png(qtbot, setup, tmp_path: Path) -> None:
    _, widget, _, errors = setup
    widget._scope.value = "whole slide"
    _run(qtbot, widget)
    paths = widget.export(tmp_path / "export")
    assert not errors
    assert sorted(p.name for p in paths) == [
        "slide_predictions.csv",
        "tumour_B_tiles.csv",
        "tumour_B_tiles.geojson",
        "tumour_B_view.png",
    ]
    assert all(p.stat().st_size > 0 for p in paths)


def test_opened_slides_are_prepared_in_the_background(
    qtbot, make_napari_viewer, analysis_slide: Path, tumour_slide: Path, tmp_path: Path, monkeypatch
) -> None:
    """The dock starts each slide's tissue map and harmonisation plan when it sees the slide (already
    open, or opened later), keeps them on disk, and the analysis then finds them at hand."""
    from napari_wsirobust.features import FeatureCache, forget_in_memory
    from napari_wsirobust.io import open_slide
    from napari_wsirobust.mil import TrainedHead
    from napari_wsirobust.models import demo_model_dir

    monkeypatch.setenv("WSIROBUST_CACHE_DIR", str(tmp_path / "cache"))
    forget_in_memory()
    viewer = make_napari_viewer()
    (first,) = viewer.open(str(analysis_slide), plugin="napari-wsirobust")
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    job = widget.prepare(first)
    assert job is not None and job is widget.prepare(first)  # started when the dock saw the slide, once
    qtbot.waitUntil(job.done, timeout=TIMEOUT_MS)
    (second,) = viewer.open(str(tumour_slide), plugin="napari-wsirobust")
    later = widget.prepare(second)  # started by the layer insertion: the same job comes back
    qtbot.waitUntil(later.done, timeout=TIMEOUT_MS)
    store = FeatureCache(tmp_path / "cache").prep
    harmonise = TrainedHead.load(demo_model_dir()).harmonisation()
    for path in (analysis_slide, tumour_slide):
        with open_slide(path) as slide:
            assert store.state(store.tissue_key(slide)) == "ready"
            assert store.state(store.plan_key(slide, harmonise)) == "ready"
    assert len(list((tmp_path / "cache" / "slides").rglob("*.npz"))) == 2
    messages: list[str] = []
    show_progress = widget._on_progress

    def record(progress) -> None:  # type: ignore[no-untyped-def]
        messages.append(progress.message)
        show_progress(progress)

    widget._on_progress = record  # the worker connects it when the run starts
    _run(qtbot, widget)
    assert widget.current_result() is not None
    assert any("tissue map of this slide at hand" in m for m in messages), messages
    assert widget.prepare(_analysis_layers(viewer)["attention"]) is None  # result layers are not slides
    assert widget.prepare(None) is None
