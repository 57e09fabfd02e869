"""Stopping a widget's background work when its dock is closed.

napari's dock close button takes the widget out of its dock (its parent becomes None) without
deleting it, so a running worker would go on to the end unseen. :func:`call_when_undocked` watches for
that and calls back (the widgets cancel; training keeps its best checkpoint as with Cancel)."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QWidget


class _UndockWatcher(QObject):
    def __init__(self, widget: QWidget, callback: Callable[[], None]) -> None:
        super().__init__(widget)
        self._widget, self._callback = widget, callback
        self._was_docked = widget.parent() is not None

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        # an exception escaping an event filter aborts a PyQt5 application, so none may leave here:
        # attributes vanish while Python tears objects down at exit, a widget may be half deleted
        try:
            if watched is self._widget and event.type() == QEvent.Type.ParentChange:
                docked = self._widget.parent() is not None
                if self._was_docked and not docked:
                    self._callback()
                self._was_docked = docked
        except (AttributeError, RuntimeError):
            pass
        return False


def call_when_undocked(widget: QWidget, callback: Callable[[], None]) -> QObject:
    """Call ``callback`` whenever ``widget`` loses its parent after having had one."""
    watcher = _UndockWatcher(widget, callback)
    widget.installEventFilter(watcher)
    return watcher
