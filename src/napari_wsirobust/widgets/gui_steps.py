"""GUI changes applied one per event-loop turn, so putting a large result into the viewer never blocks
panning, painting or input for one long turn (shared by the Analyse and Robustness widgets)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from qtpy.QtCore import QTimer

from .view_motion import ViewMotion

STEP_DELAY_MS = 20  # between steps, so input and paint events run in between

Step = Callable[[], None]


class StepQueue:
    """A queue of GUI steps, each run in its own event-loop turn ``delay_ms`` after the previous one.

    A step may add more steps with :meth:`push_front` (they run next). ``on_empty`` is called when
    the last step has run. A step raising ``RuntimeError`` (its viewer or dock closed meanwhile) drops
    the rest of the queue. ``hold``, when given, is asked before each step that may wait: a positive
    answer (ms) puts the step off by that long and asks again (the widgets hold while the user moves
    the view, see :mod:`.view_motion`). Steps given to :meth:`run` may wait; steps a running step adds
    with :meth:`push_front` do not unless it says so - they finish what it began (a layer half
    updated must not stay on screen while the user pans)."""

    def __init__(
        self,
        on_empty: Callable[[], None] | None = None,
        delay_ms: int = STEP_DELAY_MS,
        hold: Callable[[], int] | None = None,
    ) -> None:
        self._steps: list[tuple[Step, bool]] = []  # (step, may wait for the hold)
        self._on_empty = on_empty
        self._delay_ms = delay_ms
        self._hold = hold

    @property
    def busy(self) -> bool:
        """True while steps are waiting to run."""
        return bool(self._steps)

    def run(self, steps: Iterable[Step]) -> None:
        """Queue ``steps`` (after any still waiting) and start running them."""
        idle = not self._steps
        self._steps.extend((step, True) for step in steps)
        if idle and self._steps:
            QTimer.singleShot(self._delay_ms, self._next)

    def push_front(self, steps: Iterable[Step], may_wait: bool = False) -> None:
        """Run ``steps`` before the others still waiting (from inside a running step); with
        ``may_wait`` they may be held like the steps given to :meth:`run`."""
        self._steps[0:0] = [(step, may_wait) for step in steps]

    def clear(self) -> None:
        self._steps.clear()

    def _next(self) -> None:
        if not self._steps:
            return
        wait = self._hold() if self._hold is not None and self._steps[0][1] else 0
        if wait > 0:
            QTimer.singleShot(max(wait, self._delay_ms), self._next)
            return
        step, _ = self._steps.pop(0)
        try:
            step()
        except RuntimeError:  # the viewer or dock was closed meanwhile
            self._steps.clear()
        if self._steps:
            QTimer.singleShot(self._delay_ms, self._next)
        elif self._on_empty is not None:
            self._on_empty()


HELD_MESSAGE = "Result ready: the overlays go in once the view is still."


def steps_held_while_moving(
    motion: ViewMotion, on_empty: Callable[[], None], say: Callable[[str], None]
) -> StepQueue:
    """A :class:`StepQueue` whose steps wait while ``motion`` says the user is panning or zooming
    (inserting or changing a layer would stall the pan: see :mod:`.view_motion`); ``say`` gets
    :data:`HELD_MESSAGE` for the widget's status while they wait."""

    def hold() -> int:
        wait = motion.wait_ms()
        if wait:
            say(HELD_MESSAGE)
        return wait

    return StepQueue(on_empty=on_empty, hold=hold)
