"""Responsiveness: the napari event loop while the Analyse widget embeds a slide in its worker.

A QTimer ticks every 10 ms and pans the camera by a few µm each tick (a user dragging the view);
the gaps between ticks measure how long the event loop was blocked. Measured side by side in one
process: (a) panning with no analysis, (b) panning during three whole-slide analyses (each with a
fresh feature cache, so every tile is embedded; the first also loads the model and the encoder).
Processes alternate between four conditions: the defaults (worker at lowered CPU priority, a re-run's
layers updated one property per event-loop turn, shader variables parsed in linear time), the worker at
the GUI thread's priority, the in-place update done in one turn, and vispy's own shader parse; each is
the behaviour before one change, patched back in here. Full collections of Python's cyclic garbage
collector are recorded too (they hold the interpreter, GUI thread included).
Target: maximum gap <= 100 ms during the run.

Run under a display or Xvfb: ``xvfb-run -a .venv/bin/python benchmarks/bench_responsiveness.py``.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work"
SLIDE = WORK / "responsiveness_4096x3072.tiff"
RUNS = 3  # analyses per viewer process
ROUNDS = 2  # alternated rounds, one viewer process per condition each
MODES = {
    "default": "defaults (worker lowered, stepped updates)",
    "gui-priority": "worker at GUI priority",
    "one-turn": "in-place update in one turn",
    "vispy-parse": "vispy's own shader parse",
    "no-hold": "layers go in while panning",
}
TAIL_S = 1.5  # keep panning after the worker finished (without the hold the layers go in meanwhile)
STILL_TAIL_S = 1.0  # keep ticking after the overlays are in once the pan stopped: their first paints


def ensure_slide() -> Path:
    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    if not SLIDE.exists():
        tissue = TissueSpec(seed=7, tumour=True, width=4096, height=3072, tumour_fraction=0.3)
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), SLIDE)
    return SLIDE


class FullCollections:
    """Records when Python's cyclic garbage collector ran a full (generation 2) collection: it holds
    the interpreter for as long as it scans every tracked object, the GUI thread included."""

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []
        self._start = 0.0
        gc.callbacks.append(self._on_gc)

    def _on_gc(self, phase: str, info: dict) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.spans.append((self._start, time.perf_counter()))

    def within(self, start: float, end: float) -> list[tuple[float, float]]:
        return [(a, b) for a, b in self.spans if a >= start and b <= end]


def gc_summary(stamps: np.ndarray, spans: list[tuple[float, float]]) -> dict:
    """How many full collections ran between the first and last tick, the longest (ms), and how many
    gaps over 100 ms contain one."""
    gaps = np.diff(stamps) * 1000.0
    long = np.flatnonzero(gaps > 100)
    hit = sum(any(stamps[i] <= a and b <= stamps[i + 1] for a, b in spans) for i in long)
    longest = max((1000.0 * (b - a) for a, b in spans), default=0.0)
    return {"collections": len(spans), "longest_ms": longest, "long_gaps_with_gc": int(hit)}


class PanningTicker:
    """A 10 ms QTimer that records every tick and, while ``panning``, moves the camera a few µm each
    tick (a user dragging the view back and forth); ticks after ``panning`` is cleared go to ``still``."""

    def __init__(self, viewer) -> None:  # type: ignore[no-untyped-def]
        from qtpy.QtCore import QTimer

        from napari_wsirobust.widgets.analyse import camera_of

        self._camera = camera_of(viewer)
        self.panned: list[float] = []
        self.still: list[float] = []
        self.panning = True
        self._direction = 1.0
        self._timer = QTimer()
        self._timer.setInterval(10)
        self._timer.timeout.connect(self._tick)
        self._timer.start()

    def _tick(self) -> None:
        if not self.panning:
            self.still.append(time.perf_counter())
            return
        self.panned.append(time.perf_counter())
        if len(self.panned) % 100 == 0:
            self._direction = -self._direction
        cy, cx = self._camera.center[-2:]
        self._camera.center = (cy, cx + 5.0 * self._direction)

    def run_until(self, done) -> None:  # type: ignore[no-untyped-def]
        """Process events until ``done(now)`` is true, then stop ticking."""
        from qtpy.QtWidgets import QApplication

        while not done(time.perf_counter()):
            QApplication.processEvents()
            time.sleep(0.001)
        self._timer.stop()


def measure(viewer, duration_s: float) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Tick times (s, perf_counter) while panning for ``duration_s``."""
    ticker = PanningTicker(viewer)
    start = time.perf_counter()
    ticker.run_until(lambda now: now - start > duration_s)
    return np.array(ticker.panned)


def measure_run(viewer, widget) -> dict:  # type: ignore[no-untyped-def]
    """Pan from the start of a run until ``TAIL_S`` after its worker finished, then stop panning and
    keep ticking until the overlays are in plus ``STILL_TAIL_S`` (their first paints). Returns the tick
    times while panning and after, and when the worker finished, the pan stopped and the overlays were
    in (all perf_counter seconds)."""
    ticker = PanningTicker(viewer)
    times: dict[str, float] = {}

    def done(now: float) -> bool:
        if "worker_done" not in times and widget._worker is None:
            times["worker_done"] = now
        if "overlays_in" not in times and not widget.running:
            times["overlays_in"] = now
        if "pan_stopped" not in times and now - times.get("worker_done", now) > TAIL_S:
            ticker.panning, times["pan_stopped"] = False, now
        if "end" not in times and {"pan_stopped", "overlays_in"} <= times.keys():
            times["end"] = max(now, times["overlays_in"]) + STILL_TAIL_S
        return now > times.get("end", np.inf)

    ticker.run_until(done)
    return {"panned": ticker.panned, "still": ticker.still, **times}


def first_text_paint_ms(warm: bool) -> float:
    """In a fresh viewer showing the slide: time of the first paint after inserting a top-tiles-like
    shapes layer (8 ranked rectangles with text), with or without the glyph warm-up the Analyse
    widget does when its dock opens."""
    from qtpy.QtWidgets import QApplication

    import napari
    from napari_wsirobust.demo import wait_for
    from napari_wsirobust.io import open_slide
    from napari_wsirobust.widgets.result_layers import add_quietly, build_layer, warm_up_glyphs

    viewer = napari.Viewer(show=True)
    for data, kwargs, _ in open_slide(ensure_slide()).to_layer_data():
        viewer.add_image(data, **kwargs)
    wait_for(lambda: False, 1.5)
    if warm:
        warm_up_glyphs(viewer)
    corner = np.array([[0.0, 0.0], [0.0, 112.0], [112.0, 112.0], [112.0, 0.0]])
    rects = [corner + 150.0 * i for i in range(8)]
    kwargs = {"shape_type": "rectangle", "features": {"rank": list(range(1, 9))}, "edge_color": "#00ff66"}
    kwargs["text"] = {"string": "{rank}", "size": 12, "color": "#00ff66"}
    add_quietly(viewer, build_layer(rects, kwargs, "shapes"))
    canvas = viewer.window._qt_viewer.canvas.native
    start = time.perf_counter()
    canvas.update()
    QApplication.processEvents()
    elapsed = (time.perf_counter() - start) * 1000.0
    viewer.close()
    return elapsed


def _in_one_turn(update_steps):  # type: ignore[no-untyped-def]
    """``update_steps`` made into a single step (the in-place update before it was spread out)."""

    def together(*args):  # type: ignore[no-untyped-def]
        steps = update_steps(*args)
        return [lambda: [step() for step in steps]]

    return together


def session(mode: str) -> dict:
    """One viewer process: panning alone, then panning during ``RUNS`` whole-slide analyses. Mode
    "gui-priority" keeps the worker at the GUI thread's CPU priority (before
    ``widgets.jobs.lower_thread_priority``); "one-turn" updates each result layer in one event-loop
    turn (before ``update_steps`` spread it); "vispy-parse" leaves vispy's shader parse in place (before
    ``_vispy.shader_parse``); all patched here for the comparison only."""
    os.environ["WSIROBUST_CACHE_DIR"] = tempfile.mkdtemp(prefix="wsirobust-bench-cache-")
    import napari
    from napari_wsirobust import _vispy
    from napari_wsirobust.demo import wait_for
    from napari_wsirobust.io import open_slide
    from napari_wsirobust.widgets import jobs, result_layers, view_motion
    from napari_wsirobust.widgets.analyse import AnalyseWidget, camera_of

    if mode == "gui-priority":
        jobs.lower_thread_priority = lambda increment=10: False  # type: ignore[assignment]
    if mode == "one-turn":
        result_layers.update_steps = _in_one_turn(result_layers.update_steps)  # type: ignore[assignment]
    if mode == "vispy-parse":
        _vispy.install_fast_shader_parse = lambda: False  # type: ignore[assignment]
    if mode == "no-hold":
        view_motion.ViewMotion.wait_ms = lambda self: 0  # type: ignore[method-assign]
    slide_path = ensure_slide()
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1400, 900)
    for data, kwargs, _ in open_slide(slide_path).to_layer_data():
        viewer.add_image(data, **kwargs)
    widget = AnalyseWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right")
    viewer.reset_view()
    camera_of(viewer).zoom *= 2
    wait_for(lambda: False, 2.0)
    collections = FullCollections()
    idle_stamps = measure(viewer, duration_s=10.0)
    idle = np.diff(idle_stamps) * 1000.0
    idle_gc = gc_summary(idle_stamps, collections.within(idle_stamps[0], idle_stamps[-1]))
    widget._scope.value = "whole slide"
    runs = []
    for _ in range(RUNS):
        os.environ["WSIROBUST_CACHE_DIR"] = tempfile.mkdtemp(prefix="wsirobust-bench-cache-")
        start = time.perf_counter()
        assert widget.run() is not None
        run = measure_run(viewer, widget)
        stamps = np.array(run["panned"])
        after = np.array([stamps[-1], *run["still"]])
        runs.append(
            {
                "gaps": (np.diff(stamps) * 1000.0).tolist(),
                "still_gaps": (np.diff(after) * 1000.0).tolist(),
                "seconds": run["worker_done"] - start,
                "overlays_after_stop_ms": 1000.0 * (run["overlays_in"] - run["pan_stopped"]),
                "gc": gc_summary(stamps, collections.within(stamps[0], stamps[-1])),
            }
        )
    os.environ["WSIROBUST_CACHE_DIR"] = tempfile.mkdtemp(prefix="wsirobust-bench-cache-")
    start = time.perf_counter()
    assert widget.run() is not None
    wait_for(lambda: not widget.running, 600)  # no panning: the worker has the CPU to itself
    quiet_seconds = time.perf_counter() - start
    result = widget.current_result()
    viewer.close()
    if result is None:
        raise SystemExit(f"the analysis failed: {widget._status.value}")
    return {
        "mode": mode,
        "idle": idle.tolist(),
        "idle_gc": idle_gc,
        "runs": runs,
        "quiet_seconds": quiet_seconds,
        "tiles": len(result.grid),
    }


def run_session(mode: str) -> dict:
    """:func:`session` in a fresh process (a worker thread's priority cannot be restored in one)."""
    out = Path(tempfile.mkdtemp(prefix="wsirobust-bench-")) / "session.json"
    subprocess.run([sys.executable, __file__, "--session", mode, "--json", str(out)], check=True)
    return json.loads(out.read_text())


def _row(name: str, gaps: np.ndarray, collections: dict | None = None, run: dict | None = None) -> str:
    row = (
        f"| {name} | {len(gaps)} | {np.median(gaps):.1f} | {np.percentile(gaps, 99):.1f} | "
        f"{gaps.max():.1f} | {(gaps > 100).sum()} |"
    )
    if collections is not None:
        longest = f" (longest {collections['longest_ms']:.0f} ms)" if collections["collections"] else ""
        row += f" {collections['collections']}{longest} | {collections['long_gaps_with_gc']} |"
        if run is None:
            row += " - | - |"
        else:
            latency = run["overlays_after_stop_ms"]
            row += (
                f" {latency:.0f} | {max(run['still_gaps']):.1f} |"
                if latency > 0
                else " in while panning | - |"
            )
    return row


def _long(gaps: np.ndarray) -> str:
    long = np.flatnonzero(gaps > 100)
    return ", ".join(f"{int(i) + 1}/{len(gaps)}: {gaps[i]:.0f} ms" for i in long) or "none"


def main() -> int:
    if "--session" in sys.argv:
        mode, out = sys.argv[sys.argv.index("--session") + 1], sys.argv[sys.argv.index("--json") + 1]
        Path(out).write_text(json.dumps(session(mode)))
        return 0
    sessions = [run_session(mode) for _ in range(ROUNDS) for mode in MODES]  # alternated
    paints: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(3):  # alternated, side by side
        for warm in (False, True):
            paints[warm].append(first_text_paint_ms(warm))
    rows, long_gaps = [], []
    for i, sess in enumerate(sessions, 1):
        mode = MODES[sess["mode"]]
        idle = np.array(sess["idle"])
        rows.append(_row(f"process {i} ({mode}): panning, no analysis (10 s)", idle, sess["idle_gc"]))
        for j, run in enumerate(sess["runs"], 1):
            gaps = np.array(run["gaps"])
            name = f"process {i} ({mode}): during analysis {j} ({run['seconds']:.1f} s)"
            rows.append(_row(name, gaps, run["gc"], run))
            long_gaps.append(f"process {i} run {j}: {_long(gaps)}")
    quiet = {m: [x["quiet_seconds"] for x in sessions if x["mode"] == m] for m in MODES}
    panned = {m: [run["seconds"] for x in sessions if x["mode"] == m for run in x["runs"][1:]] for m in MODES}

    def pooled(mode: str, first: bool) -> np.ndarray:
        return np.concatenate(
            [
                np.array(run["gaps"])
                for sess in sessions
                if sess["mode"] == mode
                for j, run in enumerate(sess["runs"])
                if (j == 0) == first
            ]
        )

    def label(mode: str, first: bool) -> str:
        return f"{MODES[mode]}, {'first runs' if first else 'later runs'} (pooled)"

    summary = [_row(label(m, first), pooled(m, first)) for first in (True, False) for m in MODES]

    def after_stop(mode: str, first: bool) -> str:
        runs = [
            r for x in sessions if x["mode"] == mode for j, r in enumerate(x["runs"]) if (j == 0) == first
        ]
        held = [r for r in runs if r["overlays_after_stop_ms"] > 0]
        if not held:
            return f"{MODES[mode]}, {'first' if first else 'later'} runs: all {len(runs)} in while panning"
        latency = np.median([r["overlays_after_stop_ms"] for r in held])
        worst = max(max(r["still_gaps"]) for r in held)
        return (
            f"{MODES[mode]}, {'first' if first else 'later'} runs: {len(held)} of {len(runs)} held, in "
            f"{latency:.0f} ms (median) after the pan stopped, largest gap then {worst:.1f} ms"
        )

    still_lines = "; ".join(after_stop(m, first) for first in (True, False) for m in MODES)
    times = ", ".join(
        f"{MODES[m]} {np.median(panned[m]):.1f} s while panning, {np.median(quiet[m]):.1f} s without"
        for m in MODES
    )
    columns = "| condition | ticks | median gap | p99 gap | max gap | gaps > 100 ms |"
    table_head = columns + "\n" + "|---" * 6 + "|\n"
    run_head = (
        columns
        + " full GCs | long gaps with a full GC | overlays in, ms after the pan stopped"
        + " | largest gap then |\n"
        + "|---" * 10
        + "|\n"
    )
    body = (
        "## Responsiveness while analysing\n\n"
        f"`xvfb-run -a .venv/bin/python benchmarks/bench_responsiveness.py` on {machine_line()}, Xvfb + Mesa "
        f"llvmpipe. Synthetic 4096x3072 slide (0.5 µm/px), whole-slide analysis with the bundled model: "
        f"{sessions[0]['tiles']} tiles, all embedded (a fresh cache for each run). {len(sessions)} viewer "
        f"processes, {ROUNDS} per condition, alternated: {', '.join(MODES.values())} (each of the last four "
        "is the behaviour before one change: the worker's CPU priority lowered to nice +10, a re-run's "
        "layers updated one property per event-loop turn, vispy's shader-variable parse replaced by a "
        "linear-time one, `_vispy/shader_parse.py`, and layer steps held while the view moves, "
        f"`widgets/view_motion.py`); in each, 10 s of panning alone, then {RUNS} analyses. A 10 ms QTimer "
        f"pans the camera every tick from the start of a run until {TAIL_S} s after its worker finished; "
        "gaps between ticks in ms (target: max <= 100 ms while panning during the run). Then the panning "
        f"stops and ticks go on until the overlays are in plus {STILL_TAIL_S} s. The first run of a "
        "process also loads the model and creates the overlay layers; later runs update them in place."
        "\n\n"
        + table_head
        + "\n".join(summary)
        + f"\n\nAfter the pan stopped: {still_lines}.\n\nMedian analysis time (later runs, fresh cache; "
        f"without: one more run per process, no panning): {times}.\n\nEvery run (full GCs: full "
        "collections of Python's cyclic garbage collector while panning; long gaps with one: gaps over 100 "
        "ms that contain one; the last two columns: after the pan stopped):\n\n"
        + run_head
        + "\n".join(rows)
        + "\n\nGaps over 100 ms (gap number / gaps in the run): "
        + "; ".join(long_gaps)
        + ". The run's layers are built in the worker and put into the viewer one step per event-loop turn "
        "(20 ms apart; by default only once the view has been still for 250 ms): napari layer + controls, "
        "then the first paint (shader programs built, glyphs rendered, Mesa's software OpenGL).\n\n"
        "First paint of a new top-tiles layer (8 ranked rectangles with text) in a fresh viewer, 3 "
        "alternated pairs: without the glyph warm-up the Analyse dock does when it opens: median "
        f"{np.median(paints[False]):.0f} ms ({', '.join(f'{v:.0f}' for v in paints[False])}); with it: "
        f"median {np.median(paints[True]):.0f} ms ({', '.join(f'{v:.0f}' for v in paints[True])}).\n"
    )
    write_section("responsiveness", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
