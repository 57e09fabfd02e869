"""Layer steps wait while the user moves the view (widgets.view_motion, widgets.gui_steps)."""

from __future__ import annotations

import pytest

napari = pytest.importorskip("napari")

from napari.components import Camera  # noqa: E402

from napari_wsirobust.widgets.gui_steps import HELD_MESSAGE, StepQueue, steps_held_while_moving  # noqa: E402
from napari_wsirobust.widgets.view_motion import ViewMotion  # noqa: E402


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_view_is_still_until_the_camera_moves_and_again_after_the_quiet_time() -> None:
    camera, clock = Camera(), FakeClock()
    motion = ViewMotion(camera, quiet_ms=250, clock=clock)
    assert motion.wait_ms() == 0 and not motion.moving
    camera.center = (0.0, 10.0, 20.0)
    assert motion.wait_ms() == 250 and motion.moving
    clock.now += 0.1
    assert motion.wait_ms() == 150
    camera.zoom = 3.0  # zooming counts as moving too
    assert motion.wait_ms() == 250
    clock.now += 0.25
    assert motion.wait_ms() == 0 and not motion.moving
    motion.disconnect()
    camera.center = (0.0, 50.0, 50.0)
    assert motion.wait_ms() == 0  # no longer listening


def test_held_steps_run_in_order_once_the_hold_lifts(qtbot) -> None:
    answers = [40, 30, 0, 0, 0]  # the first step waits twice, then all run
    asked: list[int] = []

    def hold() -> int:
        asked.append(answers[min(len(asked), len(answers) - 1)])
        return asked[-1]

    ran: list[str] = []
    done: list[bool] = []
    queue = StepQueue(on_empty=lambda: done.append(True), delay_ms=5, hold=hold)
    queue.run([lambda: ran.append("a"), lambda: ran.append("b")])
    qtbot.wait(30)
    assert ran == [] and queue.busy  # still held
    qtbot.waitUntil(lambda: bool(done), timeout=2000)
    assert ran == ["a", "b"] and asked[:3] == [40, 30, 0] and not queue.busy


def test_steps_wait_while_the_camera_moves_and_say_so(qtbot) -> None:
    camera = Camera()
    motion = ViewMotion(camera, quiet_ms=150)
    said: list[str] = []
    ran: list[int] = []
    queue = steps_held_while_moving(motion, on_empty=lambda: None, say=said.append)
    camera.center = (0.0, 1.0, 1.0)
    queue.run([lambda: ran.append(1)])
    for i in range(8):  # keep panning for ~320 ms: the step must not run meanwhile
        qtbot.wait(40)
        camera.center = (0.0, 1.0, 2.0 + i)
    assert ran == [] and said and said[-1] == HELD_MESSAGE
    qtbot.waitUntil(lambda: ran == [1], timeout=2000)  # runs once the view has been still 150 ms


def test_steps_a_running_step_adds_finish_before_the_hold_applies_again(qtbot) -> None:
    moving = [False]
    ran: list[str] = []
    queue = StepQueue(delay_ms=5, hold=lambda: 30 if moving[0] else 0)

    def update_layer() -> None:  # like an in-place update: its parts must not be split by a pan
        ran.append("data")
        moving[0] = True  # the user starts panning right after the first part
        queue.push_front([lambda: ran.append("position"), lambda: ran.append("style")])

    def insert_layer() -> None:  # like a new hidden layer: showing it may wait
        ran.append("insert")
        queue.push_front([lambda: ran.append("show")], may_wait=True)

    queue.run([update_layer, insert_layer])
    qtbot.wait(150)
    assert ran == ["data", "position", "style"]  # the update finished; the next layer waits
    moving[0] = False
    qtbot.waitUntil(lambda: ran[-1:] == ["show"], timeout=2000)
    assert ran == ["data", "position", "style", "insert", "show"]
