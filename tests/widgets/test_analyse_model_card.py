"""The Analyse dock and model cards (pytest-qt, under Xvfb): a model's notice under every prediction it
makes, none for a model without one, and the "Model card…" button showing the card."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.mil import ModelCard  # noqa: E402
from napari_wsirobust.models import demo_model_dir  # noqa: E402
from napari_wsirobust.widgets import analyse as analyse_module  # noqa: E402
from napari_wsirobust.widgets import worker_dock  # noqa: E402
from napari_wsirobust.widgets.analyse import AnalyseWidget  # noqa: E402
from napari_wsirobust.widgets.model_list import DEMO_NAME, MODELS  # noqa: E402

pytestmark = pytest.mark.napari
TIMEOUT_MS = 120_000
DEMO_NOTICE = "Demo model trained on synthetic tissue to try the plugin; not for diagnosis."


@pytest.fixture
def setup(make_napari_viewer, analysis_slide: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    errors: list[str] = []
    monkeypatch.setattr(analyse_module, "show_error", errors.append)
    monkeypatch.setattr(worker_dock, "show_error", errors.append)
    viewer = make_napari_viewer()
    viewer.open(str(analysis_slide), plugin="napari-wsirobust")
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    return widget, errors


def _demo_copy(folder: Path, edit: dict[str, object]) -> Path:
    """The bundled demo head copied to ``folder`` with ``edit`` applied to its config (None: removed)."""
    shutil.copytree(demo_model_dir(), folder, ignore=shutil.ignore_patterns("__*"))
    data = json.loads((folder / "config.json").read_text())
    for key, value in edit.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (folder / "config.json").write_text(json.dumps(data, indent=2, sort_keys=True))
    return folder


def _analyse(qtbot, widget: AnalyseWidget, model: str) -> str:  # type: ignore[no-untyped-def]
    """Analyse the whole slide with ``model``; returns the text the result label shows."""
    widget._model.reset_choices()
    widget._model.value = model
    widget._scope.value = "whole slide"
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert widget.current_result() is not None
    return widget._result_label.native.text()


def test_the_demo_heads_notice_is_shown_with_its_prediction_and_a_plain_model_shows_none(
    qtbot, setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    widget, errors = setup
    shown = _analyse(qtbot, widget, DEMO_NAME)
    assert not errors
    result = widget.current_result()
    assert f"<b>{result.predicted_label}</b> (p = {result.probability:.2f})" in shown
    assert DEMO_NOTICE in shown and shown.index(DEMO_NOTICE) > shown.index(result.predicted_label)
    assert not widget._result_label.native.isHidden()  # shown with the dock (not hidden like a panel)

    plain = MODELS.add("demo without notice", _demo_copy(tmp_path / "plain", {"notice": None}))
    shown = _analyse(qtbot, widget, plain)
    assert not errors
    assert f"<b>{widget.current_result().predicted_label}</b>" in shown  # a prediction, and no notice
    assert DEMO_NOTICE not in shown and "⚠" not in shown

    other = MODELS.add(
        "demo, another notice", _demo_copy(tmp_path / "other", {"notice": "Use <b>only</b> for X."})
    )
    shown = _analyse(qtbot, widget, other)
    assert "Use &lt;b&gt;only&lt;/b&gt; for X." in shown  # the model's own text, not markup


def test_the_model_card_button_shows_the_chosen_models_card(qtbot, setup, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from qtpy.QtWidgets import QPlainTextEdit

    widget, errors = setup
    widget._model.value = DEMO_NAME
    widget._model_card.native.click()  # the dock's button, one click
    window = widget._card_window
    assert window is not None and window.isVisible() and not errors
    qtbot.addWidget(window)
    view = window.findChild(QPlainTextEdit)
    assert view.isReadOnly()
    assert view.toPlainText() == ModelCard.load(demo_model_dir()).to_text()
    assert DEMO_NOTICE in view.toPlainText() and "A, B, C" in view.toPlainText()
    assert DEMO_NAME in window.windowTitle()
    window.close()

    damaged = MODELS.add("damaged demo", _demo_copy(tmp_path / "damaged", {"embed_dim": 7}))
    widget._model.reset_choices()
    widget._model.value = damaged
    assert widget.show_model_card() is None
    assert errors == [
        f"{tmp_path / 'damaged'}: config.json says embed_dim=7 but in_dim=1280; " + _INCONSISTENT
    ]


_INCONSISTENT = "the folder is inconsistent - re-save or re-train the model"


def test_a_slide_unlike_every_training_site_gets_a_visible_warning_with_the_prediction(
    qtbot, setup, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    widget, errors = setup
    shown = _analyse(qtbot, widget, DEMO_NAME)  # the synthetic slide: like the demo head's sites
    assert widget.current_result().scanner is not None and "unlike every training site" not in shown
    sites = json.loads((demo_model_dir() / "config.json").read_text())["site_profiles"]
    far = {"Z": {**sites["A"], "sharpness": sites["A"]["sharpness"] * 50}}  # one site, far softer focus
    model = MODELS.add("demo, far sites", _demo_copy(tmp_path / "far", {"site_profiles": far}))
    shown = _analyse(qtbot, widget, model)
    assert not errors
    check = widget.current_result().scanner
    assert check is not None and check.unlike_training and check.nearest_site == "Z"
    assert "Scanner unlike every training site - nearest Z (differs most in sharpness)" in shown
    assert shown.index("unlike every training site") > shown.index(widget.current_result().predicted_label)
