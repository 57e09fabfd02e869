"""The guard against napari's crash after a Shapes layer is removed (see widgets.gl_guard).

Without the guard, the paints after ``remove shapes -> add shapes`` below kill the test process with a
segmentation fault on Mesa (checked by disabling it; ``scripts/shapes_removal_crash.py`` shows it)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.widgets.gl_guard import guard_layer_removal  # noqa: E402

pytestmark = pytest.mark.napari

BOXES = [np.array([[10.0, 10], [10, 60], [60, 60], [60, 10]]) + 70 * i for i in range(3)]


def _top_tiles_like(viewer):
    return viewer.add_shapes(
        BOXES,
        shape_type="rectangle",
        edge_color="#00ff66",
        face_color="transparent",
        features={"rank": [1, 2, 3]},
        text={"string": "{rank}", "size": 12, "color": "#00ff66"},
    )


def _paint(qtbot) -> None:
    """Let the shown canvas paint itself (an off-screen screenshot in between hides the crash)."""
    qtbot.wait(500)


def test_removing_shapes_then_adding_layers_keeps_the_viewer_alive(make_napari_viewer, qtbot) -> None:
    viewer = make_napari_viewer(show=True)
    kept = guard_layer_removal(viewer)
    assert kept == []
    viewer.add_image(np.random.default_rng(0).random((512, 512)).astype(np.float32), name="slide")
    for cycle in range(1, 3):
        shapes = _top_tiles_like(viewer)
        _paint(qtbot)
        viewer.layers.remove(shapes)
        _paint(qtbot)
        assert len(kept) == 5 * cycle  # faces, highlights, outline lines, vertex markers, text
    viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="next", colormap="red", translate=(0, 0))
    _paint(qtbot)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[-1] == 4 and shot[..., :3].max() > 0  # still painting: the process survived
    labelled = viewer.add_points(np.array([[5.0, 5.0]]), features={"rank": [1]}, text="{rank}")
    _paint(qtbot)
    viewer.layers.remove(labelled)  # Points showing text crash the same way
    after_points = len(kept)
    assert after_points > 10
    viewer.layers.remove(viewer.layers["next"])
    assert len(kept) == after_points  # an image's programs (and through them its textures) are not kept
    viewer.add_image(np.zeros((8, 8), dtype=np.float32), name="last")
    _paint(qtbot)


def test_the_guard_is_installed_once_per_viewer(make_napari_viewer) -> None:
    first, second = make_napari_viewer(), make_napari_viewer()
    kept = guard_layer_removal(first)
    assert guard_layer_removal(first) is kept
    assert guard_layer_removal(second) is not kept  # two empty viewers' layer lists compare equal
    shapes = first.add_shapes(BOXES, shape_type="rectangle")
    first.layers.remove(shapes)
    assert len(kept) > 0 and guard_layer_removal(second) == []


def test_the_widgets_install_the_guard(make_napari_viewer) -> None:
    from napari_wsirobust.widgets.analyse import AnalyseWidget

    viewer = make_napari_viewer()
    AnalyseWidget(viewer)
    shapes = viewer.add_shapes(BOXES, shape_type="rectangle")
    viewer.layers.remove(shapes)
    assert len(guard_layer_removal(viewer)) > 0  # installed by the widget, before this call
