"""The worker-dock base: every error meant for the user, raised inside a dock's worker, reaches the
status line as its own message; any other error is an internal error with its traceback in the log."""

from __future__ import annotations

import importlib
import logging

import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.napari

from napari_wsirobust.errors import WsiRobustError  # noqa: E402
from napari_wsirobust.io import SlideError  # noqa: E402
from napari_wsirobust.widgets import worker_dock  # noqa: E402

FRONTS = (
    "io",
    "tiling",
    "stain",
    "encoders",
    "features",
    "cohort",
    "mil",
    "analysis",
    "diagnostics",
    "synthetic",
)

TIMEOUT_MS = 20_000


def _subclasses(cls: type) -> list[type]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


def user_errors() -> list[WsiRobustError]:
    """An instance of every error class meant for the user (every package imported first)."""
    for name in FRONTS:
        importlib.import_module(f"napari_wsirobust.{name}")
    classes = sorted(set(_subclasses(WsiRobustError)), key=lambda c: c.__name__)
    return [
        cls("slide.svs", f"what went wrong ({cls.__name__})")
        if issubclass(cls, SlideError)
        else cls(f"what went wrong ({cls.__name__})")
        for cls in classes
    ]


def test_the_family_is_complete() -> None:
    names = {type(e).__name__ for e in user_errors()}
    assert len(names) >= 18
    assert {"HarmonisationError", "FeatureFileError", "ProfileError", "SlideReadError", "InputError"} <= names


class _Dock(worker_dock.WorkerDock):
    def __init__(self, viewer) -> None:
        super().__init__(viewer)
        self.shown: list[object] = []
        self.lay_out([self._cancel, self._progress, self._status], run_buttons=[])


def _failing(exc: BaseException):
    yield None
    raise exc


@pytest.fixture
def dock(make_napari_viewer, monkeypatch: pytest.MonkeyPatch):
    notified: list[str] = []
    monkeypatch.setattr(worker_dock, "show_error", notified.append)
    widget = _Dock(make_napari_viewer())
    widget.notified = notified
    return widget


def _run(qtbot, dock: _Dock, exc: BaseException) -> None:
    worker = dock.start(_failing(exc), dock.shown.append, "working ...")
    assert worker is not None
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)  # returned and finished handled


@pytest.mark.parametrize("exc", user_errors(), ids=lambda e: type(e).__name__)
def test_each_user_error_reaches_the_status_line_as_its_own_message(qtbot, dock, exc, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="napari_wsirobust"):
        _run(qtbot, dock, exc)
    assert dock._status.value == f"Failed: {exc}"
    assert dock.notified == [str(exc)]
    assert not dock.shown and not caplog.records  # no result, no traceback: it is not a bug


def test_another_error_is_internal_with_its_traceback_in_the_log(qtbot, dock, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="napari_wsirobust"):
        _run(qtbot, dock, ZeroDivisionError("division by zero"))
    assert dock._status.value.startswith("Failed: Internal error (ZeroDivisionError: division by zero)")
    assert any(r.exc_info and r.exc_info[0] is ZeroDivisionError for r in caplog.records)
    assert dock._cancel.enabled is False  # the dock is usable again


def test_a_result_reaches_show_and_a_second_job_waits(qtbot, dock) -> None:
    def job():
        yield None
        return 42

    worker = dock.start(job(), dock.shown.append, "working ...", prepare=lambda v: v + 1)
    assert worker is not None
    assert dock.start(job(), dock.shown.append, "again") is None  # one job at a time
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT_MS)
    assert dock.shown == [43]
