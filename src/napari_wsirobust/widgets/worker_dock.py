"""The one base of the docks that run long compute: one job at a time in a napari worker, with Cancel,
a progress bar, a status line, and result layers put into the viewer one step per event-loop turn.

A dock builds its own inputs, then calls :meth:`WorkerDock.start` with a compute generator (it yields
progress records, returns the result) and what to do with the result on the GUI thread. Everything
else is here: the worker's lifecycle, cancelling, errors (a user error's own message in the status
line, anything else an internal error with its traceback in the log), and the one layer-insertion
policy of every overlay (:meth:`WorkerDock.put_result_layer`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import Container, Label, ProgressBar, PushButton, Table
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QEvent, QObject

from .._vispy import install_vispy_patches
from ..errors import user_message
from .dock_lifetime import call_when_undocked
from .gui_steps import steps_held_while_moving
from .jobs import LOG, Outcome, guarded
from .result_layers import (
    add_quietly,
    build_layer,
    camera_of,
    drawn_layer_choices,
    placed_translate,
    queue_in_place_update,
    slide_choices,
)
from .view_motion import ViewMotion

if TYPE_CHECKING:
    import napari

Step = Callable[[], None]
MIN_DOCK_HEIGHT_PX = 320  # a dock opened beside another still shows its first controls without scrolling


class WorkerDock(Container):
    """Base of the Analyse, Train and Robustness docks.

    Subclasses create their widgets after ``super().__init__`` and lay them out with :meth:`lay_out`,
    placing :attr:`_cancel`, :attr:`_progress` and :attr:`_status` where they belong. Class attributes
    say what differs: :attr:`busy_message`, :attr:`cancel_text`, :attr:`cancelling_message`,
    :attr:`cancelled_message`, and whether Cancel aborts the job (:attr:`abort_on_cancel`; when False the
    job itself reads :attr:`cancel_requested`, e.g. training stops after the epoch and keeps its best).
    """

    busy_message = "A job is already running; cancel it first."
    cancel_text = "Cancel"
    cancelling_message = "Cancelling ..."
    cancelled_message = "Cancelled: nothing was changed."
    abort_on_cancel = True

    def __init__(self, viewer: napari.Viewer, status: str = "") -> None:
        from ..encoders import import_backends

        import_backends()  # timm imported on the main thread, safely (see import_backends)
        install_vispy_patches()  # removing layers must not crash napari on Mesa; cheaper first paints
        super().__init__(labels=False)
        self._body = Container(labels=False)  # the dock's widgets, in a scroll area (see _scrolled)
        self._sections: dict[int, Container] = {}  # id(table) -> its heading and itself
        self._scroll = _scrolled(self, self._body)
        self._viewer = viewer
        self._worker: Any = None
        self._cancel_event = threading.Event()
        self._run_buttons: tuple[PushButton, ...] = ()
        self._motion = ViewMotion(camera_of(viewer))
        # layer changes, one per event-loop turn, each held while the user pans or zooms
        self._steps = steps_held_while_moving(self._motion, self._finish_if_idle, self._say)
        self._cancel = PushButton(text=self.cancel_text, enabled=False)
        self._progress = ProgressBar(label="Progress", value=0, max=1, visible=False)
        self._status = message_label(status)
        self._cancel.changed.connect(lambda _v=None: self.cancel())
        self._undock_watcher = call_when_undocked(self.native, self.cancel)
        viewer.layers.events.inserted.connect(self._refresh_choices)
        viewer.layers.events.removed.connect(self._refresh_choices)

    def lay_out(self, widgets: Iterable[Any], run_buttons: Iterable[PushButton]) -> None:
        """Put the dock's widgets in order; ``run_buttons`` are disabled while a job runs.

        Labelled inputs go into forms (label beside the field); buttons, messages, plots and tables
        take the dock's whole width, a table under a heading made from its label."""
        form: list[Any] = []

        def end_form() -> None:
            if form:
                self._body.append(_section(form, labels=True))
                form.clear()

        for widget in widgets:
            if isinstance(widget, Table):
                end_form()
                heading = Label(value=widget.label)
                section = _section([heading, widget], labels=False)
                self._sections[id(widget)] = section
                self._body.append(section)
            elif (
                getattr(widget, "label", "")
                and not isinstance(widget, (PushButton, Label))
                and (
                    type(widget) is not Container  # a group (a plot box) is full width; a FileEdit is a field
                )
            ):
                form.append(widget)
            else:
                end_form()
                self._body.append(widget)
        end_form()
        self._run_buttons = tuple(run_buttons)
        self._scroll.setMinimumHeight(min(self._body.native.sizeHint().height(), MIN_DOCK_HEIGHT_PX))

    def set_panel_visible(self, widget: Any, visible: bool) -> None:
        """Show or hide a result panel (a table with its heading, a plot, a message): panels stay
        hidden while they have nothing to show, so they take no room from the slide."""
        self._sections.get(id(widget), widget).visible = visible
        widget.visible = visible

    # -- choices of layers ----------------------------------------------------------------------
    def _slide_choices(self, _w: Any = None) -> list[tuple[str, Any]]:
        return slide_choices(self._viewer)

    def _shapes_choices(self, _w: Any = None) -> list[tuple[str, Any]]:
        import napari

        return drawn_layer_choices(self._viewer, (napari.layers.Shapes,))

    def _refresh_choices(self, _event: Any = None) -> None:
        try:
            self._body.reset_choices()
        except RuntimeError:  # the dock was closed and its Qt widgets deleted: stop listening
            self._viewer.layers.events.inserted.disconnect(self._refresh_choices)
            self._viewer.layers.events.removed.disconnect(self._refresh_choices)

    # -- the job --------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """True while the worker runs or its result is still being put into the viewer."""
        return self._worker is not None or self._steps.busy

    @property
    def cancel_requested(self) -> bool:
        """True once the user pressed Cancel (or closed the dock) during the current job."""
        return self._cancel_event.is_set()

    def start(
        self,
        job: Generator[Any, None, Any],
        show: Callable[[Any], None],
        message: str,
        prepare: Callable[[Any], Any] | None = None,
    ) -> Any:
        """Run ``job`` in a worker; on success call ``show`` on the GUI thread with its value, or with
        ``prepare(value)`` when given (``prepare`` runs in the worker: building layers and tables off
        the GUI thread). Returns the worker, or None when another job is still running."""
        if self.running:
            show_info(self.busy_message)
            return None
        from napari.qt.threading import create_worker

        self._cancel_event = threading.Event()
        aborts = self._cancel_event if self.abort_on_cancel else threading.Event()
        guarded_job = guarded(job, aborts)

        def work() -> Generator[Any, None, Outcome[Any]]:
            outcome = yield from guarded_job
            if outcome.ok and prepare is not None:
                try:
                    outcome = Outcome(value=prepare(outcome.value))
                except Exception as exc:
                    LOG.error("preparing a result failed", exc_info=exc)
                    outcome = Outcome(error=f"Cannot show the result: {user_message(exc)}")
            return outcome

        worker = create_worker(work)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda outcome: self._on_returned(outcome, show))
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        self._status.value = message
        worker.start()
        return worker

    def refuse(self, problem: BaseException | str) -> None:
        """Say why a job did not start (status line and a notification)."""
        message = problem if isinstance(problem, str) else user_message(problem).strip("'\"")
        self._status.value = f"Not started: {message}"
        show_error(message)

    def cancel(self, _v: Any = None) -> None:
        if self.running:
            self._cancel_event.set()
            self._status.value = self.cancelling_message

    def _set_running(self, running: bool) -> None:
        for button in self._run_buttons:
            button.enabled = not running
        self._cancel.enabled = running
        self._progress.visible = running
        self._progress.value = 0

    def _on_progress(self, progress: Any) -> None:
        total = getattr(progress, "total", None)
        if total is not None:
            self._progress.max = max(1, int(total))
            self._progress.value = min(int(progress.done), self._progress.max)
        message = getattr(progress, "message", "")
        if message:
            self._status.value = message

    def _on_returned(self, outcome: Outcome[Any], show: Callable[[Any], None]) -> None:
        if outcome.cancelled:
            self._status.value = self.cancelled_message
        elif outcome.error or outcome.value is None:
            message = outcome.error or "the job produced no result"
            self._status.value = f"Failed: {message}"
            show_error(message)
        else:
            show(outcome.value)

    def _on_finished(self) -> None:
        self._worker = None
        self._finish_if_idle()

    def _say(self, message: str) -> None:
        self._status.value = message

    def _finish_if_idle(self) -> None:
        if not self.running:
            self._set_running(False)

    # -- result layers --------------------------------------------------------------------------
    def put_steps(self, steps: Iterable[Step]) -> None:
        """Run GUI steps one per event-loop turn, each held while the user pans or zooms."""
        self._steps.run(steps)

    def put_result_layer(
        self,
        slide_path: str,
        item: tuple[Any, dict[str, Any], str],
        offset: np.ndarray,
        built: Any = None,
    ) -> Any:
        """Put one result layer (data, kwargs, layer type) of ``slide_path`` into the viewer, placed at
        the slide's ``offset`` (µm); ``built`` is the layer already made from them in the worker.

        The policy of every overlay: an existing layer of that kind is updated in place, one property
        per event-loop turn; a new one is inserted hidden and shown a turn later (a step that may wait
        for a still view), so inserting it and its first paint never block the same turn. Returns the
        new layer, or None when an existing one is being updated."""
        data, kwargs, layer_type = item
        if queue_in_place_update(self._steps, self._viewer, slide_path, data, kwargs, layer_type, offset):
            return None
        layer = built if built is not None else build_layer(data, kwargs, layer_type)
        layer.translate = placed_translate(kwargs, offset)
        if kwargs.get("visible", True):
            layer.visible = False
            self._steps.push_front([lambda: setattr(layer, "visible", True)], may_wait=True)
        add_quietly(self._viewer, layer)
        return layer


def message_label(text: str = "") -> Label:
    """A label for messages: as wide as the dock, long text wrapping instead of widening it."""
    from qtpy.QtWidgets import QSizePolicy

    label = Label(value=text)
    label.native.setWordWrap(True)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    return label


def _section(widgets: list[Any], labels: bool) -> Container:
    """A margin-less group of the dock's widgets (a form when ``labels``)."""
    section = Container(widgets=list(widgets), labels=labels)
    section.margins = (0, 0, 0, 0)
    return section


def _scrolled(outer: Container, body: Container) -> Any:
    """Put ``body`` into a scroll area filling ``outer``: napari docks ``outer.native``, so a dock taller
    than the window scrolls instead of making the window taller than the screen, and its width follows
    what the widgets need rather than what their contents would like."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy

    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
    scroll.setWidget(body.native)
    scroll._fit_width = _FitWidth(body.native, scroll)  # kept with the scroll area
    layout = outer.native.layout()
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(scroll)
    # the dock takes the height left beside smaller docks (Slide info) rather than its scroll minimum
    outer.native.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)
    return scroll


class _FitWidth(QObject):
    """Keeps a scroll area at least as wide as its widget needs, whenever the widget's layout changes
    (a filled table or a longer message): the dock widens a little rather than cut anything off."""

    def __init__(self, body: Any, scroll: Any) -> None:
        super().__init__(scroll)
        self._body, self._scroll = body, scroll
        body.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if event.type() in (QEvent.Type.LayoutRequest, QEvent.Type.Show):
            try:
                bar = max(self._scroll.verticalScrollBar().sizeHint().width(), 16) + 4  # and a margin
                self._scroll.setMinimumWidth(self._body.minimumSizeHint().width() + bar)
            except RuntimeError:  # the dock is being deleted
                pass
        return False
