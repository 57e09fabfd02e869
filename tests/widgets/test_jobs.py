"""Worker-side job helpers: outcomes of a guarded generator and the worker thread's CPU priority."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from napari_wsirobust.analysis import NoTissueError
from napari_wsirobust.errors import user_message
from napari_wsirobust.widgets.jobs import guarded, lower_thread_priority


def _steps(n: int, fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise NoTissueError("No tissue in the selected region.")
        yield i
    return "done"


def _drain(gen):
    items = []
    while True:
        try:
            items.append(next(gen))
        except StopIteration as stop:
            return items, stop.value


def test_guarded_returns_value_error_or_cancellation() -> None:
    items, outcome = _drain(guarded(_steps(3), threading.Event()))
    assert items == [0, 1, 2] and outcome.ok and outcome.value == "done"

    items, outcome = _drain(guarded(_steps(3, fail_at=1), threading.Event()))
    assert items == [0] and not outcome.ok
    assert outcome.error == "No tissue in the selected region."  # the message, not a traceback

    cancel = threading.Event()
    job = guarded(_steps(100), cancel)
    assert next(job) == 0
    cancel.set()
    items, outcome = _drain(job)
    assert items == [] and outcome.cancelled and not outcome.ok


def test_user_message_names_unknown_errors_as_internal() -> None:
    assert (
        user_message(ValueError("bad value"))
        == "Internal error (ValueError: bad value); the details are in the log."
    )
    assert user_message(MemoryError()) == "Out of memory: analyse a smaller region."


def _nice_of(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_worker_thread_lowers_itself_and_its_children_but_never_the_main_thread() -> None:
    main_nice = _nice_of(os.getpid())
    assert lower_thread_priority() is False  # pytest runs this on the main thread
    assert _nice_of(os.getpid()) == main_nice

    seen: dict[str, int | bool] = {}

    def worker() -> None:
        seen["lowered"] = lower_thread_priority(5)
        seen["again"] = lower_thread_priority(5)  # a pooled thread coming back is not lowered twice
        seen["worker"] = _nice_of(threading.get_native_id())

        def child() -> None:
            seen["child"] = _nice_of(threading.get_native_id())

        inner = threading.Thread(target=child)
        inner.start()
        inner.join()

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    expected = min(19, main_nice + 5)
    assert seen == {"lowered": True, "again": True, "worker": expected, "child": expected}
    assert _nice_of(os.getpid()) == main_nice
