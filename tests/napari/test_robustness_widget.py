"""The Robustness widget in a real viewer (pytest-qt, under Xvfb): profiles estimated from a cohort,
the scanner-swap what-if creating drift layers aligned in µm, cancel, cohort diagnostics, export."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.analysis import METADATA_KEY  # noqa: E402
from napari_wsirobust.diagnostics import summary_rows  # noqa: E402
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide  # noqa: E402
from napari_wsirobust.widgets import robustness as robustness_module  # noqa: E402
from napari_wsirobust.widgets import worker_dock  # noqa: E402
from napari_wsirobust.widgets.result_layers import camera_of  # noqa: E402
from napari_wsirobust.widgets.robustness import RobustnessWidget  # noqa: E402

pytestmark = pytest.mark.napari
TIMEOUT_MS = 240_000


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A scanner-B tumour slide to analyse, and a 6-slide cohort CSV on scanners A and C."""
    folder = tmp_path_factory.mktemp("robustness")
    tissue = TissueSpec(seed=61, tumour=True, width=1024, height=768, tumour_fraction=0.4, atypia=1.0)
    analysed = folder / "analysed_B.tiff"
    write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), analysed)
    rows = []
    for i in range(6):
        scanner, tumour = "AC"[i % 2], i < 4 and i % 4 < 2 or i == 5
        spec = TissueSpec(seed=70 + i, tumour=tumour, width=768, height=512, tumour_fraction=0.4, atypia=1.0)
        path = folder / f"c{i}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(spec, scanner), path)
        rows.append([path.name, "tumour" if tumour else "normal", scanner, f"p{i}", "test"])
    csv_path = folder / "cohort.csv"
    with open(csv_path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(rows)
    return analysed, csv_path


@pytest.fixture
def setup(make_napari_viewer, cohort, monkeypatch: pytest.MonkeyPatch):
    errors: list[str] = []
    monkeypatch.setattr(robustness_module, "show_error", errors.append)
    monkeypatch.setattr(worker_dock, "show_error", errors.append)  # errors of the job
    viewer = make_napari_viewer()
    analysed, csv_path = cohort
    (slide_layer,) = viewer.open(str(analysed), plugin="napari-wsirobust")
    widget = RobustnessWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    widget._cohort_csv.value = str(csv_path)
    return viewer, widget, slide_layer, errors


def _wait(qtbot, widget: RobustnessWidget, worker) -> None:  # type: ignore[no-untyped-def]
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def _drift_layers(viewer) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {
        ly.metadata[METADATA_KEY]["kind"]: ly
        for ly in viewer.layers
        if ly.metadata.get(METADATA_KEY, {}).get("kind", "").startswith(("drift:", "flips:"))
    }


def _assert_drift_layers_show(result, layers: dict[str, object]) -> None:  # type: ignore[no-untyped-def]
    """Each profile's drift layer is in µm on the tile grid, and every tile centre (µm, slide frame)
    lands on its grid cell, whose value is that tile's drift."""
    grid = result.base.grid
    stride_um = grid.stride_level0[0] * grid.mpp[0]
    for outcome in result.outcomes:
        layer = layers[f"drift:{outcome.name}"]
        assert tuple(layer.scale) == pytest.approx((stride_um, stride_um))
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
        cells = [np.round(layer.world_to_data(c)).astype(int) for c in grid.centres_um]
        values = np.array([layer.data[r, c] for r, c in cells])
        np.testing.assert_allclose(values, np.clip(outcome.drift, 1e-4, None), rtol=1e-5)


def test_profiles_whatif_layers_in_um_and_export(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, slide_layer, errors = setup
    _wait(qtbot, widget, widget.estimate_profiles())
    assert not errors, errors
    assert Path(str(widget._profiles.value)).name == "cohort_profiles.json"

    widget._scope.value = "whole slide"
    _wait(qtbot, widget, widget.run_whatif())
    assert not errors, errors
    result = widget.whatif
    assert result is not None and [o.name for o in result.outcomes] == ["A", "C"]
    layers = _drift_layers(viewer)
    assert {"drift:A", "drift:C"} <= set(layers)
    _assert_drift_layers_show(result, layers)
    assert widget._table.shape[0] == 3  # original + two profiles
    assert "Spread" in widget._spread.value

    # re-running a smaller scope updates the same layers in place (no pile-up), which end up showing
    # the new result where it is
    n_layers = len(viewer.layers)
    camera = camera_of(viewer)
    camera.center, camera.zoom = (100.0, 150.0), min(viewer.canvas.size) / 200.0  # about 200 µm across
    widget._scope.value = "visible region"
    _wait(qtbot, widget, widget.run_whatif())
    assert not errors, errors
    assert len(viewer.layers) == n_layers
    assert widget.whatif is not result and len(widget.whatif.base.grid) < len(result.base.grid)
    again = _drift_layers(viewer)
    assert all(again[kind] is layers[kind] for kind in layers)
    _assert_drift_layers_show(widget.whatif, again)

    paths = widget.export(tmp_path / "export")
    names = {p.name for p in paths}
    assert {"analysed_B_whatif.csv", "analysed_B_whatif.json", "analysed_B_drift_view.png"} <= names


def test_cancel_leaves_no_layers_and_widget_usable(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, slide_layer, errors = setup
    _wait(qtbot, widget, widget.estimate_profiles())
    widget._scope.value = "whole slide"
    worker = widget.run_whatif()
    # cancel mid-run: once the first profile's tiles have been re-rendered and embedded
    qtbot.waitUntil(lambda: "profile A" in widget._status.value, timeout=TIMEOUT_MS)
    widget.cancel()
    _wait(qtbot, widget, worker)
    assert not _drift_layers(viewer) and widget.whatif is None
    assert "Cancelled" in widget._status.value
    assert widget._run.enabled and not widget._cancel.enabled


def test_closing_the_slide_during_a_whatif_shows_nothing_for_it(qtbot, setup) -> None:
    viewer, widget, slide_layer, errors = setup
    _wait(qtbot, widget, widget.estimate_profiles())
    widget._scope.value = "whole slide"
    worker = widget.run_whatif()
    viewer.layers.remove(slide_layer)  # before the worker can return: results arrive via the event loop
    _wait(qtbot, widget, worker)
    assert "was closed during the run" in widget._status.value and not errors
    assert not _drift_layers(viewer) and widget.whatif is None


def test_cohort_diagnostics_and_refusals(qtbot, setup, tmp_path: Path) -> None:
    viewer, widget, slide_layer, errors = setup
    _wait(qtbot, widget, widget.run_cohort())
    assert not errors, errors
    diag = widget.cohort
    assert diag is not None and diag.n_slides == 6 and diag.sites == ["A", "C"]
    # slides / sites, RI / MaRI / CRoMa and their worst 10 % for tiles and slides, 5 site rows, all/A/C
    assert widget._metrics.shape[0] == 1 + 12 + 5 + 3
    rows = {r[0]: r[1] for r in widget._metrics.value["data"]}
    chance_row = rows["site probe by chance (95th pct)"]
    assert float(chance_row) == pytest.approx(diag.probe_chance, abs=5e-4)  # the table parses numbers
    tiles = diag.tile_robustness
    assert rows["RI, tiles"].startswith(f"{tiles.ri:.3f} (k={tiles.k}, support")
    assert "croma" in rows["RI, tiles"] and f"of {tiles.n_samples} tiles" in rows["RI, tiles"]
    assert float(rows["MaRI worst 10 %, tiles"]) == pytest.approx(tiles.mari_worst, abs=5e-4)
    # six small slides (30 tiles), one or two per (scanner, label): too few for CRoMa's five neighbours
    # of each kind, on tiles as on slides; the table says why
    for level in ("tiles", "slides"):
        assert rows[f"CRoMa, {level}"].startswith("n/a (needs 5 samples of the same class from other sites")
        assert rows[f"CRoMa worst 10 %, {level}"] == "n/a"
    assert [tuple(r) for r in widget._metrics.value["data"][:18]] == summary_rows(diag)
    table = widget._metrics.native  # metric names readable in full, not elided
    longest = max(table.fontMetrics().horizontalAdvance(r[0]) for r in widget._metrics.value["data"])
    assert table.columnWidth(0) >= longest
    panels = 2 if diag.umap is None else 4  # PCA, and UMAP when umap-learn is installed
    assert len(widget.figure.axes) == panels and all(ax.collections for ax in widget.figure.axes)
    paths = widget.export(tmp_path / "cohort-export")
    assert {"diagnostics.json", "per_site.csv", "robustness.csv", "projection.png"} <= {p.name for p in paths}

    widget._profiles.value = str(tmp_path / "missing.json")
    assert widget.run_whatif() is None and "profiles" in errors[-1]
    widget._cohort_csv.value = str(tmp_path / "missing.csv")
    assert widget.run_cohort() is None and "cohort CSV" in errors[-1]
    assert not widget.running
