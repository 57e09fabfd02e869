"""Analyse dock widget: run the encoder and a MIL head on the visible region, drawn shapes or the
whole slide, and show attention, tile scores and the top tiles as layers aligned to the slide.

Thin: the compute is :func:`napari_wsirobust.analysis.analyse_region` in a napari worker; this module
only builds the request from the viewer and puts the result into layers (updated in place).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    Label,
    ProgressBar,
    PushButton,
    RadioButtons,
    SpinBox,
)
from napari.utils.notifications import show_error, show_info

from ..analysis import AnalysisRequest, RegionAnalysis, Resources, analyse_region
from ..analysis.export import write_geojson, write_slide_predictions_csv, write_tile_csv
from ..analysis.jobs import Outcome, guarded
from ..analysis.maps import METADATA_KEY, analysis_layers
from ..analysis.models import MODELS
from ..io.slide import LAYER_METADATA_KEY
from .dock_lifetime import call_when_undocked
from .gl_guard import guard_gl_program_deletion
from .gui_steps import steps_held_while_moving
from .layer_geometry import slide_origin_um
from .result_layers import (
    SCOPES,
    add_quietly,
    build_layer,
    camera_of,
    closed_slide_message,
    drawn_layer_choices,
    find_layer,
    placed_translate,
    queue_in_place_update,
    remove_stale,
    scope_for,
    slide_choices,
    slide_layer_for,
    warm_up_glyphs,
    warm_up_layers,
)
from .shader_parse import install_fast_shader_parse
from .view_motion import ViewMotion

if TYPE_CHECKING:
    import napari

OWN_ENCODER = "the model's encoder"


class AnalyseWidget(Container):
    """Pick slide, model, encoder and scope; Run; see and export the result."""

    def __init__(self, viewer: napari.Viewer) -> None:
        from ..encoders.model import import_backends

        import_backends()  # import timm on the main thread, safely (see import_backends)
        warm_up_layers()
        warm_up_glyphs(viewer)
        guard_gl_program_deletion()  # removing layers must not crash napari on Mesa (see gl_guard)
        install_fast_shader_parse()  # new overlays' first paints: see shader_parse
        self._viewer = viewer
        self._resources = Resources()
        self._results: dict[str, RegionAnalysis] = {}  # slide path -> latest analysis
        self._worker: Any = None
        self._cancel = threading.Event()
        self._top_index = -1
        self._motion = ViewMotion(camera_of(viewer))
        # layer changes, one per event-loop turn, each held while the user pans or zooms
        self._steps = steps_held_while_moving(self._motion, self._finish_if_idle, self._say)

        self._slide = ComboBox(label="Slide layer", choices=self._slide_choices)
        self._model = ComboBox(label="MIL model", choices=lambda _w=None: MODELS.names())
        self._model_dir = FileEdit(label="Load model folder", mode="d")
        self._load_model = PushButton(text="Add model")
        self._encoder = ComboBox(label="Encoder", choices=self._encoder_choices, value=OWN_ENCODER)
        self._device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self._scope = RadioButtons(label="Scope", choices=SCOPES, value=SCOPES[0])
        self._shapes = ComboBox(label="Shapes layer", choices=self._shapes_choices, nullable=True)
        self._top_k = SpinBox(label="Top tiles", value=8, min=1, max=100)
        self._run = PushButton(text="Analyse")
        self._cancel_button = PushButton(text="Cancel", enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, max=1, visible=False)
        self._status = Label(value="")
        self._result_label = Label(value="No analysis yet.")
        self._previous = PushButton(text="◀ Previous top tile")
        self._next = PushButton(text="Next top tile ▶")
        self._export_dir = FileEdit(label="Export folder", mode="d", value=str(Path.home()))
        self._export = PushButton(text="Export GeoJSON + CSVs + PNG")
        super().__init__(
            widgets=[
                self._slide, self._model, self._model_dir, self._load_model, self._encoder, self._device,
                self._scope, self._shapes, self._top_k, self._run, self._cancel_button, self._progress,
                self._status, self._result_label, self._previous, self._next, self._export_dir,
                self._export,
            ]
        )  # fmt: skip
        self._undock_watcher = call_when_undocked(self.native, self.cancel)
        for label in (self._status, self._result_label):
            label.native.setWordWrap(True)  # long messages wrap instead of widening the dock
        self._run.changed.connect(self.run)
        self._cancel_button.changed.connect(self.cancel)
        self._load_model.changed.connect(self._on_load_model)
        self._previous.changed.connect(lambda _v=None: self.step_top_tile(-1))
        self._next.changed.connect(lambda _v=None: self.step_top_tile(+1))
        self._export.changed.connect(lambda _v=None: self.export(Path(str(self._export_dir.value))))
        viewer.layers.events.inserted.connect(self._refresh_choices)
        viewer.layers.events.removed.connect(self._refresh_choices)
        MODELS.changed.connect(self._refresh_models)

    # -- choices --------------------------------------------------------------------------------
    def _slide_choices(self, _w: Any = None) -> list[tuple[str, Any]]:
        return slide_choices(self._viewer)

    def _shapes_choices(self, _w: Any = None) -> list[tuple[str, Any]]:
        import napari

        return drawn_layer_choices(self._viewer, (napari.layers.Shapes,))

    def _encoder_choices(self, _w: Any = None) -> list[str]:
        from ..encoders import list_encoders

        return [OWN_ENCODER, *list_encoders()]

    def _refresh_choices(self, _event: Any = None) -> None:
        self._slide.reset_choices()
        self._shapes.reset_choices()

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

    # -- running --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the worker runs or its layers are still being put into the viewer."""
        return self._worker is not None or self._steps.busy

    def build_request(self) -> AnalysisRequest:
        """The request for the current choices (raises ValueError with a message when incomplete)."""
        layer = self._slide.value
        if layer is None:
            raise ValueError("Open a slide first (File > Open, or the Slide info widget).")
        if self._model.value is None:
            raise ValueError("Choose a MIL model (or add a saved model folder).")
        meta = layer.metadata[LAYER_METADATA_KEY]
        mpp = (meta["mpp_x"], meta["mpp_y"]) if meta.get("mpp_source") == "override" else None
        encoder = None if self._encoder.value == OWN_ENCODER else self._encoder.value
        return AnalysisRequest(
            slide_path=meta["path"],
            model_dir=MODELS.path(self._model.value),
            scope=scope_for(self._viewer, self._scope.value, layer, self._shapes.value),
            encoder=encoder,
            mpp=mpp,
            device=self._device.value,
        )

    def run(self, _v: Any = None) -> Any:
        """Start an analysis in a worker thread; returns the worker (None when refused)."""
        if self.running:
            show_info("An analysis is already running; cancel it first.")
            return None
        try:
            request = self.build_request()
        except (ValueError, KeyError) as exc:
            message = str(exc).strip("'\"")
            self._status.value = f"Not started: {message}"
            show_error(message)
            return None
        from napari.qt.threading import create_worker

        self._cancel = threading.Event()
        job = guarded(analyse_region(request, self._resources), self._cancel)
        top_k, base = int(self._top_k.value), self._slide.value.name

        def work() -> Any:
            outcome = yield from job
            layers: list[Any] = []
            if outcome.ok:  # layer data and new layer objects are built here, off the GUI thread
                try:
                    layers = [
                        (data, kwargs, kind, build_layer(data, kwargs, kind))
                        for data, kwargs, kind in analysis_layers(outcome.value, top_k, name=base)
                    ]
                except ValueError as exc:
                    outcome = Outcome(error=f"Cannot show the result: {exc}")
            return outcome, layers

        worker = create_worker(work)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True, f"Analysing {Path(request.slide_path).name} ({request.scope.kind}) ...")
        worker.start()
        return worker

    def cancel(self, _v: Any = None) -> None:
        if self.running:
            self._cancel.set()
            self._status.value = "Cancelling ..."

    def _set_running(self, running: bool, message: str = "") -> None:
        self._run.enabled = not running
        self._cancel_button.enabled = running
        self._progress.visible = running
        self._progress.value = 0
        if message:
            self._status.value = message

    def _on_progress(self, progress: Any) -> None:
        total = max(1, int(progress.total))
        self._progress.max = total
        self._progress.value = min(int(progress.done), total)
        if progress.message:
            self._status.value = progress.message

    def _on_returned(self, returned: tuple[Outcome[RegionAnalysis], list[Any]]) -> None:
        outcome, layers = returned
        if outcome.cancelled:
            self._status.value = "Cancelled: no layers were changed."
            return
        if outcome.error or outcome.value is None:
            self._status.value = "Failed (see the notification)."
            show_error(outcome.error or "the analysis produced no result")
            return
        result = outcome.value
        slide_layer = slide_layer_for(self._viewer, result.request.slide_path)
        if slide_layer is None:
            self._status.value = closed_slide_message(result.request.slide_path)
            return
        self._results[result.request.slide_path] = result
        self._steps.run([*self._layer_steps(result, layers, slide_layer), lambda: self._report(result)])

    def _report(self, result: RegionAnalysis) -> None:
        probs = ", ".join(f"{n} {p:.2f}" for n, p in zip(result.label_names, result.prediction.probabilities))
        self._result_label.value = (
            f"<b>{result.predicted_label}</b> (p = {result.probability:.2f}) over {len(result.grid)} tiles "
            f"({result.request.scope.kind}); {probs}"
        )
        self._status.value = (
            f"Done in {result.seconds:.1f} s; {result.n_embedded} tiles embedded, "
            f"{len(result.grid) - result.n_embedded} from the cache."
        )

    def _on_finished(self) -> None:
        self._worker = None
        self._finish_if_idle()

    def _say(self, message: str) -> None:
        self._status.value = message

    def _finish_if_idle(self) -> None:
        if not self.running:
            self._set_running(False)

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
        wanted = {kwargs["metadata"][METADATA_KEY]["kind"] for _, kwargs, _, _ in layers}
        for item in layers:
            steps.append(lambda item=item: self._put_layer(result, item, offset))

        def finish() -> None:
            remove_stale(self._viewer, result.request.slide_path, {"attention", "score", "top_tiles"}, wanted)
            self._top_index = -1
            if slide_layer in self._viewer.layers:
                self._viewer.layers.selection.active = slide_layer

        return [*steps, finish]

    def _put_layer(self, result: RegionAnalysis, item: tuple[Any, ...], offset: np.ndarray) -> None:
        """Put one (data, kwargs, kind, built layer) from the worker into the viewer. An existing layer
        of that kind is updated in place, one :func:`update_steps` step per event-loop turn. A new
        layer that should be shown is inserted hidden and shown one turn later, so inserting it and
        its first paint (texture upload, shader compilation) never block the same turn."""
        data, kwargs, layer_type, built = item
        if queue_in_place_update(
            self._steps, self._viewer, result.request.slide_path, data, kwargs, layer_type, offset
        ):
            return
        layer = built if built is not None else build_layer(data, kwargs, layer_type)
        layer.translate = placed_translate(kwargs, offset)
        if kwargs.get("visible", True):
            layer.visible = False
            # a hidden new layer is consistent, so showing it may wait for a still view too
            self._steps.push_front([lambda: setattr(layer, "visible", True)], may_wait=True)
        add_quietly(self._viewer, layer)
        if layer_type == "shapes":
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
