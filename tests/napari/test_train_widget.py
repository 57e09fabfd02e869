"""The Train widget in a real viewer (pytest-qt, under Xvfb): cohort table from open slides + CSV,
labels from a drawn Shapes layer, training with a live plot, cancel keeps the best checkpoint,
save / reload, and analysing with the reloaded model; refusals are notified."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

napari = pytest.importorskip("napari")

from napari_wsirobust.mil import TrainedHead  # noqa: E402
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide  # noqa: E402
from napari_wsirobust.tiling import Scope  # noqa: E402
from napari_wsirobust.widgets import train as train_module  # noqa: E402
from napari_wsirobust.widgets import worker_dock  # noqa: E402
from napari_wsirobust.widgets.analyse import AnalyseWidget  # noqa: E402
from napari_wsirobust.widgets.model_list import MODELS  # noqa: E402
from napari_wsirobust.widgets.train import TrainWidget  # noqa: E402

pytestmark = pytest.mark.napari
TIMEOUT_MS = 240_000
W, H = 768, 512  # px at 0.5 µm/px: 384 x 256 µm, a handful of 112 µm tiles


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """12 small slides (two scanners, tumour/normal, train 8 / val 4): the first is returned for
    opening in the viewer (a tumour slide, train split, labelled by annotation); the other 11 are
    listed in the returned cohort CSV."""
    folder = tmp_path_factory.mktemp("train-widget-cohort")
    records = []
    for i in range(12):
        tumour, scanner = i % 2 == 0, "AB"[(i // 2) % 2]
        tissue = TissueSpec(seed=100 + i, tumour=tumour, width=W, height=H, tumour_fraction=0.4, atypia=1.0)
        path = folder / f"slide{i:02d}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), path)
        split = "train" if i < 8 else "val"
        records.append([path.name, "tumour" if tumour else "normal", scanner, f"p{i}", split])
    csv_path = folder / "cohort.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(records[1:])
    return folder / records[0][0], csv_path


@pytest.fixture
def setup(make_napari_viewer, cohort, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    errors: list[str] = []
    monkeypatch.setattr(train_module, "show_error", errors.append)
    monkeypatch.setattr(worker_dock, "show_error", errors.append)  # errors of the job
    viewer = make_napari_viewer()
    opened, csv_path = cohort
    (slide_layer,) = viewer.open(str(opened), plugin="napari-wsirobust")
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget._model_dir.value = str(tmp_path / "head")
    return viewer, widget, slide_layer, csv_path, errors


def _build_cohort(widget: TrainWidget, viewer, slide_layer, csv_path: Path) -> np.ndarray:
    """Open slide + CSV into the table, a drawn "tumour" rectangle labels the open slide; returns it."""
    assert widget.add_open_slides() == 1
    assert widget.load_cohort_csv(csv_path)
    assert len(widget.records()) == 12
    rect = np.array([[0.0, 0.0], [0.0, 384.0], [128.0, 384.0], [128.0, 0.0]])  # top half, in µm
    shapes = viewer.add_shapes([rect], shape_type="rectangle", name="tumour")
    widget._ann_layer.value = shapes
    widget._ann_slide.value = slide_layer
    assert widget.use_annotations() == "tumour"
    first = widget.records()[0]
    assert first["label"] == "tumour" and first["labels_from"].startswith("annotations (tumour")
    split_column = list(widget._table.column_headers).index("split")
    widget._table.data[0, split_column] = "train"  # edited in the table, as a user would
    assert widget.records()[0]["split"] == "train"
    return rect


def _train(qtbot, widget: TrainWidget) -> None:
    assert widget.train() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_train_end_to_end_then_save_reload_and_analyse(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, slide_layer, csv_path, errors = setup
    rect = _build_cohort(widget, viewer, slide_layer, csv_path)
    widget._epochs.value = 6
    widget._loss.value = "paired-scan"  # this cohort has no re-scanned patient: refused at once
    assert widget.train() is None and "scanned at two or more sites" in errors.pop()
    widget._loss.value = "auto"  # robust on by default: colours harmonised (auto), so robust-site
    _train(qtbot, widget)
    assert not errors, errors
    run = widget.last_run
    assert run is not None and run.result is not None and not run.result.cancelled
    assert run.result.config.losses["site_moment"] == 30.0 and run.result.config.losses["paired_scan"] == 0
    assert widget.plot.epochs == list(range(1, 7))
    assert all(np.isfinite(widget.plot.losses)) and all(0 <= a <= 1 for a in widget.plot.val_aucs)

    # labelled tiles: exactly the opened slide's tiles whose centres lie in the drawn rectangle
    (bag,) = [
        b
        for b in run.bags["train"]
        if Path(b.row.path) == Path(slide_layer.metadata["wsirobust"]["path"]).resolve()
    ]
    centres = bag.grid.centres_um
    inside = Scope.polygons([rect]).contains(centres[:, 0], centres[:, 1])
    assert inside.any() and run.annotated_tiles == int(inside.sum())
    np.testing.assert_array_equal(bag.tile_labels, np.where(inside, 1, -1))

    # metrics: val overall and per scanner, shown in the table
    assert [(m.split, m.site) for m in widget.metrics] == [("val", "all"), ("val", "A"), ("val", "B")]
    assert widget._metrics.shape == (3, 5)
    table = widget._metrics.native  # every cell readable in full, not elided
    for col in range(table.columnCount()):
        widest = max(table.fontMetrics().horizontalAdvance(table.item(r, col).text()) for r in range(3))
        assert table.columnWidth(col) >= widest

    # saved model in the registry, so the Analyse widget lists it
    model_dir = Path(str(widget._model_dir.value))
    assert (model_dir / "CURRENT").exists() or (model_dir / "config.json").exists()
    assert "head" in MODELS.names()

    saved = tmp_path / "exported-head"
    assert widget.save_model(saved) is not None
    widget._head = None
    head = widget.load_model(saved)
    assert head is not None and head.label_names == ["normal", "tumour"]
    original = TrainedHead.load(model_dir)
    for key, value in original.model.state_dict().items():
        assert torch.equal(value, head.model.state_dict()[key])

    analyse = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(analyse, area="right")
    assert "exported-head" in analyse._model.choices
    analyse._model.value = "exported-head"
    analyse._scope.value = "whole slide"
    assert analyse.run() is not None
    qtbot.waitUntil(lambda: not analyse.running, timeout=TIMEOUT_MS)
    result = analyse.current_result()
    assert result is not None and result.label_names == ["normal", "tumour"]
    assert Path(result.request.model_dir) == saved.resolve()
    assert np.isclose(result.prediction.probabilities.sum(), 1.0)


@pytest.mark.parametrize("how", ["cancel button", "dock closed"])
def test_cancel_keeps_the_best_checkpoint(qtbot, setup, how: str) -> None:
    viewer, widget, slide_layer, csv_path, errors = setup
    _build_cohort(widget, viewer, slide_layer, csv_path)
    widget._epochs.value = 1000
    widget._patience.value = 1000
    worker = widget.train()
    assert worker is not None
    qtbot.waitUntil(lambda: len(widget.plot.epochs) >= 3, timeout=TIMEOUT_MS)
    if how == "cancel button":
        widget._cancel.native.click()
    else:  # napari's close button takes the widget out of its dock; training must not go on unseen
        viewer.window.remove_dock_widget(widget.native)
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)
    assert not errors, errors
    result = widget.last_run.result
    assert result.cancelled and 3 <= len(result.history) < 1000
    best = max(result.history, key=lambda r: (r.val_auc, -r.val_loss))
    assert result.best_epoch == best.epoch
    on_disk = TrainedHead.load(Path(str(widget._model_dir.value)))
    assert on_disk.config.metrics["best_epoch"] == result.best_epoch
    for key, value in result.model.state_dict().items():
        assert torch.equal(value, on_disk.model.state_dict()[key])
    assert widget._train.enabled and not widget._cancel.enabled  # usable again
    assert "Stopped early" in widget._status.value or "stopped early" in widget._status.value


def test_refusals_are_notified_and_nothing_starts(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, slide_layer, csv_path, errors = setup
    assert widget.train() is None and "no slides" in errors[-1]
    widget.add_open_slides()
    assert widget.train() is None and "no label" in errors[-1]
    assert not widget.load_cohort_csv(tmp_path / "missing.csv") and "not found" in errors[-1]
    widget._ann_layer.value = None
    assert widget.use_annotations() is None and "Choose an annotation layer" in errors[-1]
    viewer.add_shapes([np.array([[0, 0], [0, 50], [50, 50], [50, 0]], float)], name="my drawing")
    widget._ann_layer.value = viewer.layers["my drawing"]
    widget._ann_slide.value = slide_layer
    assert widget.use_annotations() is None and "name the layer after the class" in errors[-1]
    assert widget.save_model(tmp_path / "x") is None and "No model" in errors[-1]
    (tmp_path / "junk").mkdir()
    assert widget.load_model(tmp_path / "junk") is None and "Cannot load" in errors[-1]
    assert not widget.running and widget._train.enabled


def test_harmonised_training_from_the_widget(qtbot, setup) -> None:
    viewer, widget, slide_layer, csv_path, errors = setup
    _build_cohort(widget, viewer, slide_layer, csv_path)
    widget._epochs.value = 2
    widget._harmonise.value = "Z"
    assert widget.train() is None and "no site 'Z' among the training slides" in errors.pop()
    assert widget._status.value.startswith("Not started")
    widget._harmonise.value = "auto"
    widget._loss.value = "augment"  # learns from scanner-swapped views: none are made of harmonised tiles
    assert widget.train() is None and "needs scanner-swapped views" in errors.pop()
    widget._loss.value = "auto"  # with harmonisation: robust-site
    _train(qtbot, widget)
    assert not errors, errors
    config = widget.last_run.result.config
    assert config.losses["site_moment"] == 30.0 and config.losses["view_ce"] == 0
    assert config.harmonise["site"] in {"A", "B", "C"} and config.format_version == 2


@pytest.fixture
def no_mpp_setup(make_napari_viewer, cohort_without_mpp, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A Train dock and a viewer, errors collected; the cohort's slides state no pixel size."""
    errors: list[str] = []
    monkeypatch.setattr(train_module, "show_error", errors.append)
    monkeypatch.setattr(worker_dock, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget._model_dir.value = str(tmp_path / "head")
    widget._epochs.value = 2
    widget._harmonise.value = "none"
    return viewer, widget, cohort_without_mpp, errors


def test_mpp_column_is_shown_edited_used_and_saved(qtbot, no_mpp_setup, tmp_path: Path) -> None:
    import warnings

    from napari_wsirobust.io import MissingMPPWarning
    from napari_wsirobust.widgets.slide_info import SlideInfoWidget

    viewer, widget, csv_path, errors = no_mpp_setup
    assert widget.load_cohort_csv(csv_path)
    mpp_column = list(widget._table.column_headers).index("mpp")
    assert [r["mpp"] for r in widget.records()] == [""] * 6  # blank: the file's pixel size
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        _train(qtbot, widget)
    assert "has no pixel size" in errors[-1] and "mpp column of the Train dock's table" in errors[-1]

    widget._table.data[0, mpp_column] = "zero"
    assert widget.train() is None and "row 1: mpp 'zero' is not a pixel size" in errors[-1]
    for row in range(6):
        widget._table.data[row, mpp_column] = "0.5"  # typed in the table, as a user would
    assert [r["mpp"] for r in widget.records()] == ["0.5"] * 6
    errors.clear()
    _train(qtbot, widget)
    assert not errors, errors
    bags = [b for split in widget.last_run.bags.values() for b in split]
    assert len(bags) == 6 and all(b.row.mpp == 0.5 and b.grid.mpp == (0.5, 0.5) for b in bags)

    saved = tmp_path / "cohort_with_mpp.csv"
    assert widget.save_cohort_csv(saved)
    assert [r["mpp"] for r in csv.DictReader(saved.read_text().splitlines())] == ["0.5"] * 6
    widget.set_records([])
    assert widget.load_cohort_csv(saved)
    assert [r["mpp"] for r in widget.records()] == ["0.5"] * 6

    # a pixel size set in the Slide info dock comes along with "Add open slides"
    widget.set_records([])
    info = SlideInfoWidget(viewer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        viewer.open(str(csv_path.parent / "nompp0_A.tiff"), plugin="napari-wsirobust")
    info._layer_edit.value = viewer.layers[0]
    info._mpp_edit.value = 0.25
    info._on_apply_mpp_clicked()
    assert widget.add_open_slides() == 1
    assert widget.records()[0]["mpp"] == "0.25"
