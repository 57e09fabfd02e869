"""Whether the user is moving the view, so GUI work that blocks for a while can wait until it is still.

Putting a new overlay layer into napari blocks the event loop for one turn (its controls and vispy
visuals: 68-82 ms in an instrumented run on 2 cores with software OpenGL) and the canvas paints right
after it in the same turn; while the user drags the slide that turn shows as a stall of up to 164 ms
(``benchmarks/bench_responsiveness.py``, condition "layers go in while panning"). The widgets
therefore hold such steps while the camera is moving and run them once it has been still for
:data:`QUIET_MS` - the same thing map viewers do with labels and overlays. No Qt here: it
listens to napari's camera model.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

QUIET_MS = 250  # the view counts as still once its camera has not changed for this long


class ViewMotion:
    """Remembers when ``camera`` (napari's camera model) last panned or zoomed."""

    def __init__(
        self, camera: Any, quiet_ms: int = QUIET_MS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._camera = camera
        self._quiet_ms = quiet_ms
        self._clock = clock
        self._last_move = -math.inf
        for name in ("center", "zoom"):
            getattr(camera.events, name).connect(self._moved)

    def _moved(self, _event: Any = None) -> None:
        self._last_move = self._clock()

    @property
    def moving(self) -> bool:
        """True while the camera changed less than ``quiet_ms`` ago."""
        return self.wait_ms() > 0

    def wait_ms(self) -> int:
        """0 when the view is still; otherwise how many ms until it will have been still long enough
        (if it does not move again)."""
        still_ms = (self._clock() - self._last_move) * 1000.0
        return 0 if still_ms >= self._quiet_ms else max(1, math.ceil(self._quiet_ms - still_ms - 1e-6))

    def disconnect(self) -> None:
        """Stop listening to the camera (a closed widget)."""
        for name in ("center", "zoom"):
            getattr(self._camera.events, name).disconnect(self._moved)
