"""The guard against napari crashing after layers are removed on Mesa (see _vispy.gl_guard).

With the guard disabled, the paints after ``remove shapes -> add shapes`` below kill the test process
with a segmentation fault on Mesa (checked by hand; ``scripts/shapes_removal_crash.py`` shows it)."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from vispy.gloo import glir  # noqa: E402

from napari_wsirobust._vispy import gl_guard  # noqa: E402

pytestmark = pytest.mark.napari

BOXES = [np.array([[10.0, 10], [10, 60], [60, 60], [60, 10]]) + 70 * i for i in range(3)]


def _overlays(viewer) -> list:
    """Layers like the Analyse widget's: a translucent heatmap, a score map and labelled top tiles."""
    heat = viewer.add_image(
        np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64),
        colormap="inferno",
        opacity=0.6,
        blending="translucent",
        scale=(4, 4),
        name="attention",
    )
    score = viewer.add_image(np.eye(16, dtype=np.float32), colormap="PiYG", scale=(16, 16), name="score")
    tiles = viewer.add_shapes(
        BOXES,
        shape_type="rectangle",
        edge_color="#00ff66",
        face_color="transparent",
        features={"rank": [1, 2, 3]},
        text={"string": "{rank}", "size": 12, "color": "#00ff66"},
        name="top tiles",
    )
    return [heat, score, tiles]


def _paint(qtbot) -> None:
    """Let the shown canvas paint itself (an off-screen screenshot in between hides the crash)."""
    qtbot.wait(500)


def test_removing_overlays_then_adding_layers_keeps_the_viewer_alive(make_napari_viewer, qtbot) -> None:
    assert gl_guard.guard_gl_program_deletion()
    viewer = make_napari_viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random((256, 256)).astype(np.float32), name="slide")
    _paint(qtbot)
    before = gl_guard.kept_programs()
    for _ in range(2):
        layers = _overlays(viewer)
        _paint(qtbot)
        for layer in layers:
            viewer.layers.remove(layer)
        _paint(qtbot)
    labelled = viewer.add_points(np.array([[5.0, 5.0]]), features={"rank": [1]}, text="{rank}")
    _paint(qtbot)
    viewer.layers.remove(labelled)
    viewer.add_image(np.zeros((32, 32), dtype=np.float32), name="next slide", colormap="red")
    _paint(qtbot)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].max() > 0  # still painting: the process survived
    if gl_guard._state["mesa"]:  # on Mesa the removed layers' programs were left undeleted
        assert gl_guard.kept_programs() > before


def test_mesa_is_recognised_from_the_gl_version() -> None:
    class FakeGL:
        GL_VERSION = 0x1F02

        def __init__(self, version: str) -> None:
            self.version = version

        def glGetParameter(self, _name: int) -> str:
            return self.version

    state = dict(gl_guard._state)
    try:
        gl_guard._state["mesa"] = None
        assert gl_guard._is_mesa(FakeGL("4.5 (Compatibility Profile) Mesa 22.3.6"))
        gl_guard._state["mesa"] = None
        assert not gl_guard._is_mesa(FakeGL("4.6.0 NVIDIA 550.54.14"))
    finally:
        gl_guard._state.update(state)


def test_other_gl_implementations_still_delete_programs(monkeypatch) -> None:
    deleted = []
    monkeypatch.setattr(glir.GlirProgram, "delete", lambda self: deleted.append(self))
    monkeypatch.setitem(gl_guard._state, "installed", False)
    monkeypatch.setitem(gl_guard._state, "mesa", False)
    assert gl_guard.guard_gl_program_deletion()
    kept = gl_guard.kept_programs()
    glir.GlirProgram.delete("program")
    assert deleted == ["program"] and gl_guard.kept_programs() == kept
    monkeypatch.setitem(gl_guard._state, "mesa", True)
    glir.GlirProgram.delete("another")
    assert deleted == ["program"] and gl_guard.kept_programs() == kept + 1


def test_the_widgets_install_the_guard(make_napari_viewer, monkeypatch) -> None:
    from napari_wsirobust.widgets.analyse import AnalyseWidget

    unguarded = glir.GlirProgram.delete
    monkeypatch.setattr(glir.GlirProgram, "delete", unguarded)
    monkeypatch.setitem(gl_guard._state, "installed", False)
    AnalyseWidget(make_napari_viewer())
    assert gl_guard._state["installed"] and glir.GlirProgram.delete is not unguarded


def test_opening_a_slide_installs_the_guard(monkeypatch, analysis_slide) -> None:
    from napari_wsirobust._reader import read_slides

    unguarded = glir.GlirProgram.delete
    monkeypatch.setattr(glir.GlirProgram, "delete", unguarded)
    monkeypatch.setitem(gl_guard._state, "installed", False)
    assert read_slides(str(analysis_slide))
    assert gl_guard._state["installed"] and glir.GlirProgram.delete is not unguarded
