"""Robustness dock widget: scanner-swap what-if on a scope (drift layers, predictions by profile) and
cohort diagnostics (RI, MaRI and CRoMa, site predictability, per-site metrics, projection plot).

Thin: the compute is :mod:`napari_wsirobust.diagnostics`; this module runs it in napari workers and
moves the results into layers, tables and a matplotlib canvas.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    PushButton,
    RadioButtons,
    Table,
)
from napari.utils.notifications import show_error, show_info

from .._atomic import atomic_write_csv, atomic_write_text
from ..analysis import METADATA_KEY, AnalysisRequest, Resources
from ..diagnostics import (
    CohortDiagnostics,
    WhatIfResult,
    diagnose_cohort_csv,
    estimate_cohort_profiles,
    load_profiles,
    projection_figure,
    scanner_whatif,
    summary_rows,
    whatif_layers,
    write_diagnostics,
)
from ..errors import InputError, WsiRobustError
from ..io import LAYER_METADATA_KEY
from ..stain import StainProfile
from .layer_geometry import slide_origin_um
from .model_list import MODELS
from .result_layers import (
    SCOPES,
    closed_slide_message,
    remove_stale,
    scope_for,
    slide_layer_for,
)
from .tables import compact_table, fit_table
from .worker_dock import WorkerDock, message_label

if TYPE_CHECKING:
    import napari


class RobustnessWidget(WorkerDock):
    """Scanner-swap what-if with drift layers, and cohort robustness diagnostics."""

    busy_message = "A diagnostic is already running; cancel it first."

    def __init__(self, viewer: napari.Viewer) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        super().__init__(viewer, status="Choose profiles (or a cohort to estimate them) and run.")
        self._resources = Resources()
        self.whatif: WhatIfResult | None = None
        self.cohort: CohortDiagnostics | None = None
        self._source_profiles: dict[str, StainProfile] = {}  # slide path -> its own colour profile

        self._slide = ComboBox(label="Slide layer", choices=self._slide_choices)
        self._model = ComboBox(label="MIL model", choices=lambda _w=None: MODELS.names())
        self._profiles = FileEdit(label="Scanner profiles", mode="r", filter="*.json")
        self._cohort_csv = FileEdit(label="Cohort CSV", mode="r", filter="*.csv")
        self._estimate = PushButton(text="Estimate profiles from the cohort")
        self._scope = RadioButtons(label="Scope", choices=SCOPES, value=SCOPES[0])
        self._shapes = ComboBox(label="Shapes layer", choices=self._shapes_choices, nullable=True)
        self._run = PushButton(text="Run scanner-swap what-if")
        self._diagnose = PushButton(text="Run cohort diagnostics")
        self._table = Table(value=[], label="Predictions by profile")
        self._table.read_only = True
        self._spread = message_label()
        self._metrics = Table(value=[], label="Cohort metrics")
        self._metrics.read_only = True
        for table in (self._table, self._metrics):
            compact_table(table)
        self.figure = Figure(figsize=(5, 2.6), tight_layout=True)
        self._canvas = FigureCanvasQTAgg(self.figure)
        self._plot_box = Container(labels=False)
        self._plot_box.native.layout().addWidget(self._canvas)
        self._export_dir = FileEdit(label="Export folder", mode="d", value=str(Path.home()))
        self._export = PushButton(text="Export PNG + JSON + CSV")
        self.lay_out(
            [
                self._slide, self._model, self._profiles, self._cohort_csv, self._estimate, self._scope,
                self._shapes, self._run, self._diagnose, self._cancel, self._progress, self._status,
                self._table, self._spread, self._metrics, self._plot_box, self._export_dir, self._export,
            ],
            run_buttons=[self._run, self._diagnose, self._estimate],
        )  # fmt: skip
        for panel in (self._table, self._spread, self._metrics, self._plot_box):
            self.set_panel_visible(panel, False)  # empty until a run fills it
        self._estimate.changed.connect(lambda _v=None: self.estimate_profiles())
        self._run.changed.connect(lambda _v=None: self.run_whatif())
        self._diagnose.changed.connect(lambda _v=None: self.run_cohort())
        self._export.changed.connect(lambda _v=None: self.export(Path(str(self._export_dir.value))))

    # -- profiles -------------------------------------------------------------------------------
    def estimate_profiles(self) -> Any:
        csv = Path(str(self._cohort_csv.value))
        if not csv.is_file():
            self.refuse("Choose a cohort CSV (path, label, site/scanner) to estimate scanner profiles from.")
            return None
        out = csv.with_name(f"{csv.stem}_profiles.json")

        def done(path: Path) -> None:
            self._profiles.value = str(path)
            self._status.value = f"Scanner profiles saved to {path}"

        return self.start(
            estimate_cohort_profiles(csv, out), done, f"Estimating scanner profiles from {csv.name} ..."
        )

    # -- what-if --------------------------------------------------------------------------------
    def run_whatif(self) -> Any:
        """Start the what-if on the chosen scope; returns the worker (None when refused)."""
        layer = self._slide.value
        try:
            if layer is None:
                raise InputError("Open a slide first.")
            if self._model.value is None:
                raise InputError("Choose a MIL model.")
            profiles_path = Path(str(self._profiles.value))
            if not profiles_path.is_file():
                raise InputError("Choose a scanner profiles file, or estimate one from a cohort CSV.")
            profiles = load_profiles(profiles_path)
            meta = layer.metadata[LAYER_METADATA_KEY]
            mpp = (meta["mpp_x"], meta["mpp_y"]) if meta.get("mpp_source") == "override" else None
            request = AnalysisRequest(
                slide_path=meta["path"],
                model_dir=MODELS.path(self._model.value),
                scope=scope_for(self._viewer, self._scope.value, layer, self._shapes.value),
                mpp=mpp,
            )
        except WsiRobustError as exc:
            self.refuse(exc)
            return None
        # the slide's own profile (48 tiles read) is estimated once, not on every re-run
        job = scanner_whatif(
            request, profiles, self._resources, self._source_profiles.get(request.slide_path)
        )
        return self.start(
            job, self._show_whatif, f"Scanner-swap what-if on {layer.name} ({len(profiles)} profiles) ..."
        )

    def _show_whatif(self, result: WhatIfResult) -> None:
        path = result.base.request.slide_path
        self._source_profiles[path] = result.source_profile
        slide_layer = slide_layer_for(self._viewer, path)  # the analysed slide, not the one chosen now
        if slide_layer is None:
            self._status.value = closed_slide_message(path)
            return
        self.whatif = result
        offset = slide_origin_um(slide_layer)
        layers = whatif_layers(result, slide_layer.name)
        wanted = {kwargs["metadata"][METADATA_KEY]["kind"] for _, kwargs, _ in layers}
        steps = [lambda item=item: self.put_result_layer(path, item, offset) for item in layers]
        self.put_steps([*steps, lambda: self._finish_whatif(result, wanted, slide_layer)])

    def _finish_whatif(self, result: WhatIfResult, wanted: set[str], slide_layer: Any) -> None:
        """Remove stale drift layers, fill the table and the spread once the layers are in place."""
        path = result.base.request.slide_path
        existing = {
            ly.metadata[METADATA_KEY]["kind"]
            for ly in self._viewer.layers
            if ly.metadata.get(METADATA_KEY, {}).get("slide") == path
            and ly.metadata[METADATA_KEY]["kind"].startswith(("drift:", "flips:"))
        }
        remove_stale(self._viewer, path, existing, wanted)
        if slide_layer in self._viewer.layers:
            self._viewer.layers.selection.active = slide_layer
        rows = result.table()
        columns = list(rows[0])
        data = [[_cell(r[c]) for c in columns] for r in rows]
        self._table.value = {"data": data, "index": list(range(len(data))), "columns": columns}
        fit_table(self._table)
        self.set_panel_visible(self._table, True)
        self.set_panel_visible(self._spread, True)
        label = result.base.predicted_label
        self._spread.value = (
            f"Spread of p({label}) across profiles: <b>{result.spread:.3f}</b> "
            f"({len(result.base.grid)} tiles)"
        )
        self._status.value = "What-if done: one drift layer per profile (flipped tiles marked in magenta)."

    # -- cohort ---------------------------------------------------------------------------------
    def run_cohort(self) -> Any:
        csv = Path(str(self._cohort_csv.value))
        if not csv.is_file():
            self.refuse("Choose a cohort CSV for the cohort diagnostics.")
            return None
        if self._model.value is None:
            self.refuse("Choose a MIL model.")
            return None
        try:
            head = self._resources.head(MODELS.path(self._model.value))
        except WsiRobustError as exc:
            self.refuse(exc)
            return None
        job = diagnose_cohort_csv(csv, head)
        return self.start(job, self._show_cohort, f"Cohort diagnostics on {csv.name} ...")

    def _show_cohort(self, diag: CohortDiagnostics) -> None:
        self.cohort = diag
        rows = [list(row) for row in summary_rows(diag)]
        rows += [
            [
                f"{m.site}: AUC / bal. acc. / ECE",
                f"{_cell(m.auc)} / {_cell(m.balanced_accuracy)} / {_cell(m.ece)}",
            ]
            for m in diag.per_site
        ]
        self._metrics.value = {"data": rows, "index": list(range(len(rows))), "columns": ["metric", "value"]}
        fit_table(self._metrics)
        self.set_panel_visible(self._metrics, True)
        self._canvas.setMinimumHeight(220 if diag.umap is None else 420)  # a second row: the UMAP
        self.set_panel_visible(self._plot_box, True)
        projection_figure(diag, self.figure)
        self._canvas.draw_idle()
        self._status.value = f"Cohort diagnostics done ({diag.n_slides} slides)."

    # -- export ---------------------------------------------------------------------------------
    def export(self, folder: Path) -> list[Path]:
        """What-if table (CSV + JSON) and canvas PNG, cohort diagnostics (JSON, CSV, projection PNG)."""
        if self.whatif is None and self.cohort is None:
            show_error("Nothing to export: run the what-if or the cohort diagnostics first.")
            return []
        paths: list[Path] = []
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if self.whatif is not None:
                rows = self.whatif.table()
                stem = Path(self.whatif.base.slide_name).stem
                paths.append(
                    atomic_write_csv(
                        folder / f"{stem}_whatif.csv", list(rows[0]), ([r[c] for c in rows[0]] for r in rows)
                    )
                )
                payload = {
                    "slide": self.whatif.base.request.slide_path,
                    "spread": self.whatif.spread,
                    "profiles": rows,
                }
                paths.append(atomic_write_text(folder / f"{stem}_whatif.json", json.dumps(payload, indent=2)))
                png = folder / f"{stem}_drift_view.png"
                self._viewer.screenshot(str(png), canvas_only=True, flash=False)
                paths.append(png)
            if self.cohort is not None:
                paths += write_diagnostics(self.cohort, folder)
        except (OSError, ValueError) as exc:
            show_error(f"Export failed: {exc}")
            return []
        show_info(f"Exported {len(paths)} files to {folder}")
        return paths


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.3f}"
    return str(value)
