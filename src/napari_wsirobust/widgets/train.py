"""Train dock widget: build a cohort from open slides and/or a cohort CSV, label slides from the
table or from drawn annotations, give slides without a pixel size theirs (the ``mpp`` column), train
the robust MIL head in a worker with a live plot, and make the model available to the Analyse widget.

Thin: validation is :func:`~napari_wsirobust.cohort.build_cohort_table`, training
:func:`~napari_wsirobust.mil.train_table`, metrics
:func:`~napari_wsirobust.mil.metrics_table`; this module moves values between them and Qt.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    LineEdit,
    PushButton,
    SpinBox,
    Table,
)
from napari.utils.notifications import show_error, show_info

from ..cohort import (
    REFERENCE,
    TABLE_COLUMNS,
    TRAIN,
    AnnotationError,
    CohortError,
    SlideAnnotations,
    build_cohort_table,
    read_cohort_table,
    record_for_slide,
    records_from_table,
    records_to_rows,
    write_cohort_csv,
)
from ..errors import WsiRobustError, is_user_error, user_message
from ..features import ExtractConfig, default_cache_dir
from ..io import LAYER_METADATA_KEY
from ..mil import (
    AUTO_PRESET,
    DEFAULT_PRESET,
    LOSS_PRESETS,
    EpochReport,
    MetricRow,
    Stage,
    TrainConfig,
    TrainedHead,
    TrainingRun,
    check_harmonisation,
    check_losses_fit_cohort,
    metrics_table,
    resolve_preset,
    save_checkpoint,
    train_table,
)
from .jobs import LOG
from .layer_geometry import annotations_from_layer
from .model_list import MODELS
from .result_layers import drawn_layer_choices
from .slide_info import slide_layers
from .tables import compact_table, fit_table
from .training_plot import TrainingPlot
from .worker_dock import WorkerDock

if TYPE_CHECKING:
    import napari

METRIC_COLUMNS = ("split", "site", "slides", "AUC", "balanced accuracy")


def default_model_dir() -> Path:
    return Path.home() / "wsirobust-models" / time.strftime("head-%Y%m%d-%H%M%S")


def _format(value: float) -> str:
    return "n/a" if value != value else f"{value:.3f}"  # NaN: a split/site with one class only


def _override_mpp(meta: dict[str, Any]) -> float | None:
    """The pixel size set in the Slide info dock for a slide layer (None: the file's is used)."""
    return float(meta["mpp_x"]) if meta.get("mpp_source") == "override" and meta.get("mpp_x") else None


class TrainWidget(WorkerDock):
    """Cohort table, annotations, loss choice, Train/Cancel with a live plot, metrics, Save/Load."""

    busy_message = "Training is already running; cancel it first."
    cancel_text = "Cancel (keep best)"
    cancelling_message = "Stopping after this epoch; the best model so far is kept ..."
    abort_on_cancel = False  # training reads cancel_requested: it stops after the epoch, keeping its best

    def __init__(self, viewer: napari.Viewer) -> None:
        from ..encoders import list_encoders

        super().__init__(viewer, status="Add slides, set labels, Train.")
        self._annotations: dict[str, SlideAnnotations] = {}  # slide path -> drawn labels
        self._head: TrainedHead | None = None
        self.last_run: TrainingRun | None = None
        self.metrics: list[MetricRow] = []

        self._table = Table(value=[], columns=list(TABLE_COLUMNS), label="Cohort")
        self._table.tooltip = (
            "One row per slide; edit the cells. mpp: the slide's pixel size in µm/px, replacing the one "
            "in its file (for slides without one); blank: the file's. Saved with the cohort CSV."
        )
        self._add_open = PushButton(text="Add open slides")
        self._remove = PushButton(text="Remove selected rows")
        self._csv_in = FileEdit(label="Cohort CSV", mode="r", filter="*.csv")
        self._load_csv = PushButton(text="Load cohort CSV")
        self._csv_out = FileEdit(label="Save table as", mode="w", filter="*.csv")
        self._save_csv = PushButton(text="Save cohort CSV")
        self._ann_layer = ComboBox(label="Annotation layer", choices=self._annotation_choices, nullable=True)
        self._ann_slide = ComboBox(label="drawn on slide", choices=self._slide_choices, nullable=True)
        self._value_labels = LineEdit(label="Labels layer values", value="1=tumour, 2=normal")
        self._classes = LineEdit(label="Classes", value="normal, tumour")
        self._reference = LineEdit(label="Negative class", value="normal")
        self._use_ann = PushButton(text="Label slide from annotations")
        self._loss = ComboBox(label="Loss", choices=[AUTO_PRESET, *LOSS_PRESETS], value=AUTO_PRESET)
        self._loss.tooltip = (
            "auto: robust-site when harmonising colours, else robust-paired when some labelled training "
            f"patient was scanned at two sites, else {DEFAULT_PRESET}"
        )
        self._harmonise = LineEdit(label="Harmonise colours to", value="auto")
        self._harmonise.tooltip = (
            "auto (the least sharp training site), a site of the table, or none: every slide's tiles are "
            "re-rendered into that site's colour profile before embedding, here and whenever the model "
            "is used (best on the shortcut benchmark: BENCHMARKS.md, harmonised tiles)"
        )
        self._encoder = ComboBox(label="Encoder", choices=list_encoders(), value=ExtractConfig.encoder)
        self._colour = ComboBox(
            label="Slide colour",
            choices=[("As scanned", "as-scanned"), ("sRGB (embedded ICC profiles)", "srgb")],
            value="as-scanned",
        )
        self._colour.tooltip = (
            "sRGB applies each slide's embedded colour profile before embedding; the model remembers "
            "the choice and analysis applies it"
        )
        self._device = ComboBox(label="Device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self._epochs = SpinBox(label="Epochs", value=40, min=1, max=1000)
        self._patience = SpinBox(label="Patience (epochs)", value=20, min=1, max=1000)
        self._patience.tooltip = "stop after this many epochs without a better validation AUC"
        self._model_dir = FileEdit(label="Model folder", mode="d", value=str(default_model_dir()))
        self._train = PushButton(text="Train")
        self.plot = TrainingPlot()
        self._plot_box = Container(labels=False)
        self._plot_box.native.layout().addWidget(self.plot.widget)
        self._metrics = Table(value=[], columns=list(METRIC_COLUMNS), label="Metrics")
        self._metrics.read_only = True
        self._save_to = FileEdit(label="Save model to", mode="d")
        self._save = PushButton(text="Save model")
        self._load_from = FileEdit(label="Load model", mode="d")
        self._load = PushButton(text="Load model")
        self.lay_out(
            [
                self._table, self._add_open, self._remove, self._csv_in, self._load_csv, self._csv_out,
                self._save_csv, self._ann_layer, self._ann_slide, self._value_labels, self._classes,
                self._reference, self._use_ann, self._loss, self._harmonise, self._encoder, self._colour,
                self._device,
                self._epochs, self._patience, self._model_dir, self._train, self._cancel, self._progress,
                self._status, self._plot_box, self._metrics, self._save_to, self._save, self._load_from,
                self._load,
            ],
            run_buttons=[self._train],
        )  # fmt: skip
        compact_table(self._table, min_rows=4)
        compact_table(self._metrics)
        for panel in (self._plot_box, self._metrics):
            self.set_panel_visible(panel, False)  # empty until training or a loaded model fills it

        self._add_open.changed.connect(lambda _v=None: self.add_open_slides())
        self._remove.changed.connect(lambda _v=None: self.remove_selected_rows())
        self._load_csv.changed.connect(lambda _v=None: self.load_cohort_csv(Path(str(self._csv_in.value))))
        self._save_csv.changed.connect(lambda _v=None: self.save_cohort_csv(Path(str(self._csv_out.value))))
        self._use_ann.changed.connect(lambda _v=None: self.use_annotations())
        self._train.changed.connect(lambda _v=None: self.train())
        self._save.changed.connect(lambda _v=None: self.save_model(Path(str(self._save_to.value))))
        self._load.changed.connect(lambda _v=None: self.load_model(Path(str(self._load_from.value))))

    # -- layer choices ------------------------------------------------------------------------------
    def _annotation_choices(self, _w: Any = None) -> list[tuple[str, Any]]:
        import napari

        return drawn_layer_choices(self._viewer, (napari.layers.Shapes, napari.layers.Labels))

    # -- cohort table -------------------------------------------------------------------------------
    def records(self) -> list[dict[str, str]]:
        """The table as edited, one dict per slide."""
        if self._table.shape[0] == 0:
            return []
        return [
            {k: "" if v is None else str(v) for k, v in rec.items()} for rec in self._table.to_dict("records")
        ]

    def set_records(self, records: list[dict[str, str]]) -> None:
        data = [[rec.get(c, "") for c in TABLE_COLUMNS] for rec in records]
        self._table.value = {"data": data, "index": list(range(len(data))), "columns": list(TABLE_COLUMNS)}
        fit_table(self._table, min_rows=4)

    def add_open_slides(self) -> int:
        """Add every slide layer not in the table yet; returns how many were added."""
        records = self.records()
        known = {Path(r["path"]).resolve() for r in records}
        added = 0
        for layer in slide_layers(self._viewer):
            meta = layer.metadata[LAYER_METADATA_KEY]
            if Path(meta["path"]).resolve() not in known:
                records.append(record_for_slide(meta["path"], meta.get("vendor"), _override_mpp(meta)))
                added += 1
        self.set_records(records)
        self._status.value = f"{added} slide(s) added; set their labels (or draw annotations) and splits."
        return added

    def remove_selected_rows(self) -> None:
        selected = {i.row() for i in self._table.native.selectionModel().selectedRows()}
        self.set_records([r for i, r in enumerate(self.records()) if i not in selected])

    def load_cohort_csv(self, path: Path) -> bool:
        try:
            table = read_cohort_table(path)
        except (CohortError, OSError) as exc:
            show_error(f"Cannot load the cohort: {exc}")
            return False
        known = {r["path"] for r in self.records()}
        self.set_records(self.records() + [r for r in records_from_table(table) if r["path"] not in known])
        self._status.value = f"Loaded {len(table)} slides from {path.name}."
        return True

    def save_cohort_csv(self, path: Path) -> bool:
        try:
            written = write_cohort_csv(records_to_rows(self.records()), path)
        except (CohortError, OSError) as exc:
            show_error(f"Cannot save the cohort: {exc}")
            return False
        show_info(f"Cohort saved to {written}")
        return True

    def use_annotations(self) -> str | None:
        """Label the chosen slide from the chosen Shapes/Labels layer; returns the slide label."""
        layer, slide = self._ann_layer.value, self._ann_slide.value
        if layer is None or slide is None:
            show_error("Choose an annotation layer (Shapes or Labels) and the slide it was drawn on.")
            return None
        try:
            known = {c.strip() for c in self._classes.value.split(",") if c.strip()}
            known |= {r["label"] for r in self.records() if r["label"]} | {self._reference.value.strip()}
            annotations = annotations_from_layer(layer, slide, self._value_labels.value, sorted(known))
            label = annotations.slide_label(self._reference.value.strip())
        except (AnnotationError, ValueError) as exc:
            show_error(f"Cannot use {layer.name!r}: {exc}")
            return None
        path = str(Path(slide.metadata[LAYER_METADATA_KEY]["path"]).resolve())
        records = self.records()
        if not any(Path(r["path"]).resolve() == Path(path) for r in records):
            meta = slide.metadata[LAYER_METADATA_KEY]
            records.append(record_for_slide(path, meta.get("vendor"), _override_mpp(meta)))
        n = len(annotations.regions) + len(annotations.masks)
        for rec in records:
            if Path(rec["path"]).resolve() == Path(path):
                rec["label"], rec["labels_from"] = label, f"annotations ({layer.name}, {n})"
        self._annotations[path] = annotations
        self.set_records(records)
        self._status.value = (
            f"{Path(path).name}: slide label {label!r} from {n} annotation(s) in {layer.name!r}."
        )
        return label

    # -- training -----------------------------------------------------------------------------------
    def train(self) -> Any:
        """Validate the table and start training in a worker; returns the worker (None if refused)."""
        if self.running:
            show_info(self.busy_message)
            return None
        try:
            rows = records_to_rows(self.records())
            table = build_cohort_table(rows, "the cohort table")
            used = {r.path for r in table.rows}
            annotations = {p: a for p, a in self._annotations.items() if p in used}
            for a in annotations.values():
                a.labels_present()  # unmapped painted values are refused now, not mid-training
            harmonise_to = str(self._harmonise.value).strip() or "none"
            harmonise_to = None if harmonise_to.lower() == "none" else harmonise_to
            paired_rows = table.split(TRAIN, REFERENCE)  # where paired-scan consistency finds re-scans
            preset = resolve_preset(self._loss.value, paired_rows, harmonised=harmonise_to is not None)
            check_losses_fit_cohort(LOSS_PRESETS[preset], paired_rows)
            if harmonise_to is not None:
                sites = sorted({r.site for r in table.split(TRAIN)})
                check_harmonisation(LOSS_PRESETS[preset], harmonise_to, sites)
        except WsiRobustError as exc:  # before the worker starts
            self.refuse(exc)
            return None
        model_dir = Path(str(self._model_dir.value))
        extract = ExtractConfig(
            cache_dir=str(default_cache_dir()),
            encoder=self._encoder.value,
            device=self._device.value,
            color=self._colour.value,
        )
        config = TrainConfig(
            epochs=int(self._epochs.value), patience=int(self._patience.value), losses=LOSS_PRESETS[preset]
        )
        job = train_table(
            table, model_dir, extract, config, workers=0, annotations=annotations,
            should_stop=lambda: self.cancel_requested, other_splits=True, harmonise_to=harmonise_to,
        )  # fmt: skip

        def prepare(run: TrainingRun) -> tuple[TrainingRun, list[MetricRow]]:
            """The metrics of the trained head on every split, computed in the worker."""
            if run.result is None:
                return run, []
            head = TrainedHead(run.result.model, run.result.config, run.result.standardiser)
            return run, metrics_table(head, run.bags)

        self.plot.reset()
        self.set_panel_visible(self._plot_box, True)
        return self.start(job, self._show_run, f"Training on {len(table)} slides ({preset}) ...", prepare)

    def _on_progress(self, item: Stage | EpochReport) -> None:
        if not isinstance(item, EpochReport):
            super()._on_progress(item)
            return
        self.plot.add(item)
        self._progress.max, self._progress.value = item.n_epochs, item.epoch
        loss = item.losses.get("total", float("nan"))
        self._status.value = (
            f"Epoch {item.epoch}/{item.n_epochs}: loss {loss:.3f}, val AUC {_format(item.val_auc)} "
            f"(best {_format(item.best_val_auc)} at epoch {item.best_epoch})"
        )

    def _show_run(self, prepared: tuple[TrainingRun, list[MetricRow]]) -> None:
        run, metrics = prepared
        if run.result is None:
            self._status.value = "Stopped before the first epoch ended: no model was saved."
            return
        self.last_run, self.metrics = run, metrics
        result = run.result
        self._head = TrainedHead(result.model, result.config, result.standardiser)
        self.show_metrics(metrics)
        folder = Path(str(self._model_dir.value))
        name = MODELS.add(folder.name, folder)
        stopped = "stopped early; " if result.cancelled else ""
        annotated = f", {run.annotated_tiles} annotated tiles" if run.annotated_tiles else ""
        self._status.value = (
            f"Done ({stopped}best epoch {result.best_epoch} of {len(result.history)}{annotated}). "
            f"Saved to {folder}; model {name!r} is now in the Analyse widget."
        )

    def show_metrics(self, metrics: list[MetricRow]) -> None:
        data = [
            [m.split, m.site, str(m.n_slides), _format(m.auc), _format(m.balanced_accuracy)] for m in metrics
        ]
        self._metrics.value = {"data": data, "index": list(range(len(data))), "columns": list(METRIC_COLUMNS)}
        fit_table(self._metrics)
        self.set_panel_visible(self._metrics, True)

    # -- save / load --------------------------------------------------------------------------------
    def save_model(self, folder: Path) -> Path | None:
        """Save the current model (safetensors + JSON) to ``folder`` and list it in the Analyse widget."""
        if self._head is None:
            show_error("No model to save: train or load one first.")
            return None
        head = self._head
        extras = head.standardiser.to_tensors() if head.standardiser is not None else None
        try:
            saved = save_checkpoint(head.model, head.config, folder, extras)
        except (OSError, ValueError) as exc:
            show_error(f"Cannot save the model: {exc}")
            return None
        MODELS.add(folder.name, folder)
        show_info(f"Model saved to {folder}")
        return saved

    def load_model(self, folder: Path) -> TrainedHead | None:
        """Load a saved model, show its recorded validation metrics, list it in the Analyse widget."""
        try:
            head = TrainedHead.load(folder)
        except Exception as exc:  # any unreadable checkpoint: tell the user, keep the widget usable
            if not is_user_error(exc):
                LOG.error("loading a model failed", exc_info=exc)
            show_error(f"Cannot load a model from {folder}: {user_message(exc)}")
            return None
        self._head = head
        recorded = head.config.metrics or {}
        self.show_metrics(
            [
                MetricRow(
                    "val (recorded)",
                    "all",
                    0,
                    float(recorded.get("val_auc", float("nan"))),
                    float(recorded.get("val_balanced_accuracy", float("nan"))),
                )
            ]
        )
        name = MODELS.add(folder.name, folder)
        self._status.value = (
            f"Loaded {name!r}: {head.config.encoder_name}, labels {', '.join(head.label_names)}."
        )
        return head
