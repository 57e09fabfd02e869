"""Analyse dock widget: run the encoder and a MIL head on the visible region, drawn shapes or the
whole slide, and show attention, tile scores and the top tiles as layers aligned to the slide.

Thin: the compute is :func:`napari_wsirobust.analysis.analyse_region` in a napari worker; this module
only builds the request from the viewer and puts the result into layers (updated in place).
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info

from ..analysis import (
    METADATA_KEY,
    AnalysisRequest,
    BackgroundPreparation,
    PrepRequest,
    RegionAnalysis,
    Resources,
    analyse_region,
    analysis_layers,
    write_geojson,
    write_slide_predictions_csv,
    write_tile_csv,
)
from ..errors import InputError, WsiRobustError
from ..io import LAYER_METADATA_KEY
from ..mil import ModelCard
from .jobs import lower_thread_priority
from .layer_geometry import slide_origin_um
from .model_list import MODELS
from .result_layers import (
    SCOPES,
    build_layer,
    camera_of,
    closed_slide_message,
    find_layer,
    remove_stale,
    scope_for,
    slide_layer_for,
    warm_up_glyphs,
    warm_up_layers,
)
from .worker_dock import WorkerDock, message_label

if TYPE_CHECKING:
    import napari

OWN_ENCODER = "the model's encoder"


class AnalyseWidget(WorkerDock):
    """Pick slide, model, encoder and scope; Run; see and export the result."""

    busy_message = "An analysis is already running; cancel it first."
    cancelled_message = "Cancelled: no layers were changed."

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__(viewer)
        warm_up_layers()
        warm_up_glyphs(viewer)
        self._resources = Resources()
        self._preparation = BackgroundPreparation(self._resources, lower_thread_priority)
        self._results: dict[str, RegionAnalysis] = {}  # slide path -> latest analysis
        self._top_index = -1
        self._card_window: Any = None  # the open model card, if any

        self._slide = ComboBox(label="Slide layer", choices=self._slide_choices)
        self._model = ComboBox(label="MIL model", choices=lambda _w=None: MODELS.names())
        self._model_dir = FileEdit(label="Load model folder", mode="d")
        self._load_model = PushButton(text="Add model")
        self._model_card = PushButton(text="Model card…")
        self._encoder = ComboBox(label="Encoder", choices=self._encoder_choices, value=OWN_ENCODER)
        self._device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self._scope = RadioButtons(label="Scope", choices=SCOPES, value=SCOPES[0])
        self._shapes = ComboBox(label="Shapes layer", choices=self._shapes_choices, nullable=True)
        self._top_k = SpinBox(label="Top tiles", value=8, min=1, max=100)
        self._run = PushButton(text="Analyse")
        self._result_label = message_label("No analysis yet.")
        self._previous = PushButton(text="◀ Previous top tile")
        self._next = PushButton(text="Next top tile ▶")
        self._export_dir = FileEdit(label="Export folder", mode="d", value=str(Path.home()))
        self._export = PushButton(text="Export GeoJSON + CSVs + PNG")
        self.lay_out(
            [
                self._slide, self._model, self._model_dir,
                Container(widgets=[self._load_model, self._model_card], layout="horizontal", labels=False),
                self._encoder, self._device,
                self._scope, self._shapes, self._top_k, self._run, self._cancel, self._progress,
                self._status, self._result_label, self._previous, self._next, self._export_dir,
                self._export,
            ],
            run_buttons=[self._run],
        )  # fmt: skip
        self._run.changed.connect(self.run)
        self._load_model.changed.connect(self._on_load_model)
        self._model_card.changed.connect(lambda _v=None: self.show_model_card())
        self._previous.changed.connect(lambda _v=None: self.step_top_tile(-1))
        self._next.changed.connect(lambda _v=None: self.step_top_tile(+1))
        self._export.changed.connect(lambda _v=None: self.export(Path(str(self._export_dir.value))))
        MODELS.changed.connect(self._refresh_models)
        # a slide's tissue map and harmonisation plan are made in the background once it is opened
        self._slide.changed.connect(lambda _v=None: self.prepare(self._slide.value))
        for choice in (self._model, self._encoder, self._device):
            choice.changed.connect(lambda _v=None: self.prepare(self._slide.value))
        viewer.layers.events.inserted.connect(lambda event: self.prepare(event.value))
        self.prepare(self._slide.value)

    # -- choices --------------------------------------------------------------------------------
    def _encoder_choices(self, _w: Any = None) -> list[str]:
        from ..encoders import list_encoders

        return [OWN_ENCODER, *list_encoders()]

    def _refresh_models(self) -> None:
        try:
            self._model.reset_choices()
        except RuntimeError:  # the dock was closed and its Qt widgets deleted: stop listening
            MODELS.changed.disconnect(self._refresh_models)

    def _on_load_model(self, _v: Any = None) -> None:
        folder = Path(str(self._model_dir.value))
        if not (folder / "config.json").exists() and not (folder / "CURRENT").exists():
            show_error(f"{folder} is not a saved model folder (no config.json).")
            return
        name = MODELS.add(folder.name, folder)
        self._model.value = name
        show_info(f"model {name!r} added")

    def show_model_card(self) -> Any:
        """Open the chosen model's card (:class:`~napari_wsirobust.mil.ModelCard`) in a read-only
        window; returns the window, or None when the model's folder does not load (the error says why)."""
        if self._model.value is None:
            show_error("Choose a MIL model first.")
            return None
        try:
            card = ModelCard.load(MODELS.path(self._model.value))
        except WsiRobustError as exc:
            show_error(str(exc))
            return None
        self._card_window = text_window(f"Model card: {self._model.value}", card.to_text(), self.native)
        self._card_window.show()
        return self._card_window

    # -- running --------------------------------------------------------------------------------
    def prepare(self, layer: Any) -> Any:
        """Start the slide's per-slide work (tissue map; the plan for the chosen model) in the
        background; returns the job, or None when ``layer`` is not a slide."""
        meta = getattr(layer, "metadata", {}).get(LAYER_METADATA_KEY) if layer is not None else None
        if not meta or not meta.get("path"):
            return None
        model = MODELS.path(self._model.value) if self._model.value is not None else None
        encoder = None if self._encoder.value == OWN_ENCODER else self._encoder.value
        request = PrepRequest(meta["path"], model, _override_mpp(meta), None, encoder, self._device.value)
        return self._preparation.submit(request)

    def build_request(self) -> AnalysisRequest:
        """The request for the current choices (raises :class:`InputError` saying what is missing)."""
        layer = self._slide.value
        if layer is None:
            raise InputError("Open a slide first (File > Open, or the Slide info widget).")
        if self._model.value is None:
            raise InputError("Choose a MIL model (or add a saved model folder).")
        meta = layer.metadata[LAYER_METADATA_KEY]
        encoder = None if self._encoder.value == OWN_ENCODER else self._encoder.value
        return AnalysisRequest(
            slide_path=meta["path"],
            model_dir=MODELS.path(self._model.value),
            scope=scope_for(self._viewer, self._scope.value, layer, self._shapes.value),
            encoder=encoder,
            mpp=_override_mpp(meta),
            device=self._device.value,
        )

    def run(self, _v: Any = None) -> Any:
        """Start an analysis in a worker thread; returns the worker (None when refused)."""
        if self.running:
            show_info(self.busy_message)
            return None
        try:
            request = self.build_request()
        except WsiRobustError as exc:
            self.refuse(exc)
            return None
        top_k, base = int(self._top_k.value), self._slide.value.name

        def prepare(result: RegionAnalysis) -> tuple[RegionAnalysis, list[Any], str]:
            """Layer data and new layer objects, built in the worker, off the GUI thread; the notice
            of the model that made the prediction."""
            items = analysis_layers(result, top_k, name=base)
            notice = self._resources.head(result.request.model_dir).config.notice
            return result, [(item, build_layer(*item)) for item in items], notice

        job = analyse_region(request, self._resources)
        message = f"Analysing {Path(request.slide_path).name} ({request.scope.kind}) ..."
        return self.start(job, self._show, message, prepare)

    def _show(self, prepared: tuple[RegionAnalysis, list[Any], str]) -> None:
        result, layers, notice = prepared
        slide_layer = slide_layer_for(self._viewer, result.request.slide_path)
        if slide_layer is None:
            self._status.value = closed_slide_message(result.request.slide_path)
            return
        self._results[result.request.slide_path] = result
        self.put_steps(
            [*self._layer_steps(result, layers, slide_layer), lambda: self._report(result, notice)]
        )

    def _report(self, result: RegionAnalysis, notice: str = "") -> None:
        probs = ", ".join(f"{n} {p:.2f}" for n, p in zip(result.label_names, result.prediction.probabilities))
        caveat = f"<br>⚠ <i>{escape(notice)}</i>" if notice else ""  # the model's own, with every prediction
        scanner = result.scanner.warning() if result.scanner is not None else ""
        scanner = scanner[:1].upper() + scanner[1:]
        unlike = f"<br><b style='color:#ff9f1a'>⚠ {escape(scanner)}</b>" if scanner else ""
        self._result_label.value = (
            f"<b>{result.predicted_label}</b> (p = {result.probability:.2f}) over {len(result.grid)} tiles "
            f"({result.request.scope.kind}); {probs}{unlike}{caveat}"
        )
        excluded = result.excluded
        in_scope = len(result.grid) + (excluded.count if excluded else 0)
        self._status.value = (
            f"Done in {result.seconds:.1f} s; {result.n_embedded} tiles embedded, "
            f"{in_scope - result.n_embedded} from the cache."
            + (f" Warning: {excluded.describe()}." if excluded and excluded.count else "")
        )

    # -- layers ---------------------------------------------------------------------------------
    def _find_layer(self, slide_path: str, kind: str) -> Any:
        return find_layer(self._viewer, slide_path, kind)

    def _layer_steps(
        self, result: RegionAnalysis, layers: list[Any], slide_layer: Any
    ) -> list[Callable[[], None]]:
        """One GUI step per layer to add or update in place, placed on ``slide_layer`` (the analysed
        slide, not necessarily the one the widget shows now), then removal of stale ones."""
        offset = slide_origin_um(slide_layer)
        steps: list[Callable[[], None]] = []
        wanted = {kwargs["metadata"][METADATA_KEY]["kind"] for (_, kwargs, _), _ in layers}
        for item in layers:
            steps.append(lambda item=item: self._put_layer(result, item, offset))

        def finish() -> None:
            remove_stale(self._viewer, result.request.slide_path, {"attention", "score", "top_tiles"}, wanted)
            self._top_index = -1
            if slide_layer in self._viewer.layers:
                self._viewer.layers.selection.active = slide_layer

        return [*steps, finish]

    def _put_layer(self, result: RegionAnalysis, item: tuple[Any, ...], offset: np.ndarray) -> None:
        """Put one ((data, kwargs, kind), built layer) from the worker into the viewer; a new top-tiles
        layer gets its selection and key bindings."""
        data_kwargs_kind, built = item
        layer = self.put_result_layer(result.request.slide_path, data_kwargs_kind, offset, built)
        if layer is not None and data_kwargs_kind[2] == "shapes":
            layer.events.highlight.connect(self._on_top_tile_selected)
            layer.bind_key(".", lambda _ly: self.step_top_tile(+1), overwrite=True)
            layer.bind_key(",", lambda _ly: self.step_top_tile(-1), overwrite=True)

    def top_tiles_layer(self) -> Any:
        result = self.current_result()
        return None if result is None else self._find_layer(result.request.slide_path, "top_tiles")

    def current_result(self) -> RegionAnalysis | None:
        layer = self._slide.value
        if layer is None:
            return None
        return self._results.get(layer.metadata[LAYER_METADATA_KEY]["path"])

    def step_top_tile(self, step: int) -> int | None:
        """Centre the camera on the next (step +1) or previous (-1) top tile; returns its index."""
        layer = self.top_tiles_layer()
        if layer is None or len(layer.data) == 0:
            show_info("No top tiles yet: run an analysis first.")
            return None
        self._top_index = (self._top_index + step) % len(layer.data)
        self._jump_to(layer, self._top_index)
        return self._top_index

    def _on_top_tile_selected(self, event: Any) -> None:
        layer = event.source
        if len(layer.selected_data) == 1:
            self._top_index = next(iter(layer.selected_data))
            self._jump_to(layer, self._top_index)

    def _jump_to(self, layer: Any, index: int) -> None:
        corners = np.array([layer.data_to_world(v)[-2:] for v in layer.data[index]])
        centre = corners.mean(axis=0)
        side = float(np.ptp(corners[:, 0]))
        camera_of(self._viewer).center = tuple(centre)
        canvas = min(self._viewer.canvas.size)
        if side > 0 and canvas > 0:
            camera_of(self._viewer).zoom = max(camera_of(self._viewer).zoom, canvas / (4 * side))
        feats = layer.features.iloc[index]
        self._status.value = f"Top tile #{int(feats['rank'])}: attention {float(feats['attention']):.4f}"

    # -- export ---------------------------------------------------------------------------------
    def export(self, folder: Path) -> list[Path]:
        """Write the current slide's GeoJSON and tile CSV, all slides' predictions CSV, and a PNG."""
        result = self.current_result()
        if result is None:
            show_error("Nothing to export: run an analysis on this slide first.")
            return []
        stem = Path(result.slide_name).stem
        try:
            folder.mkdir(parents=True, exist_ok=True)
            paths = [
                write_geojson(result, folder / f"{stem}_tiles.geojson", int(self._top_k.value)),
                write_tile_csv(result, folder / f"{stem}_tiles.csv"),
                write_slide_predictions_csv(list(self._results.values()), folder / "slide_predictions.csv"),
            ]
            png = folder / f"{stem}_view.png"
            self._viewer.screenshot(str(png), canvas_only=True, flash=False)
            paths.append(png)
        except (OSError, ValueError) as exc:
            show_error(f"Export failed: {exc}")
            return []
        show_info(f"Exported {len(paths)} files to {folder}")
        return paths


def text_window(title: str, text: str, parent: Any = None) -> Any:
    """A read-only window showing ``text`` in a fixed-width font, with a Close button (not shown yet)."""
    from qtpy.QtGui import QFontDatabase
    from qtpy.QtWidgets import QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout

    window = QDialog(parent)
    window.setWindowTitle(title)
    view = QPlainTextEdit(text)
    view.setReadOnly(True)
    view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
    view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(window.close)
    layout = QVBoxLayout(window)
    layout.addWidget(view)
    layout.addWidget(buttons)
    window.resize(820, 560)
    return window


def _override_mpp(meta: dict[str, Any]) -> tuple[float, float] | None:
    """The pixel size a slide layer's metadata overrides (set in the Slide info dock), else None."""
    return (meta["mpp_x"], meta["mpp_y"]) if meta.get("mpp_source") == "override" else None
