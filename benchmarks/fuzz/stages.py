"""The stages every fuzz variant goes through, as a viewer and the analysis would: open, view, the
npe2 reader, tiling with strict tile reads; and the command line (``extract``, ``predict``). A stage
never raises: what happened is an :class:`Outcome` (or a :class:`CliRun`)."""

from __future__ import annotations

import io
import os
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _memory import PeakRSS  # noqa: E402

PARTIAL, CLEAN, ERROR, CRASH, HANG = "partial", "clean", "error", "crash", "hang"
MAX_TILES = 20
TIMEOUT_S = 60.0
REGION = 512


@dataclass
class Outcome:
    """What one variant gave."""

    kind: str = CLEAN  # partial | clean | error | crash | hang
    stage: str = "open"  # where an error happened
    error: str | None = None  # "ExceptionType: message"
    damaged: int = 0  # slide.damaged_tiles after every stage
    excluded: int = 0  # strict tile reads that raised UnreadableRegionError
    tiles_read: int = 0
    refused: str | None = None  # "Type: message" of a clear error of the tiling stage (no MPP, not RGB)
    first_damage: str | None = None  # the first damaged file tile, described
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # unclear messages, crashes
    traceback: str | None = None
    seconds: float = 0.0
    rss_growth_mib: float = 0.0

    def summary(self) -> str:
        parts = [self.kind]
        if self.error:
            parts.append(f"{self.stage}: {self.error}")
        if self.damaged or self.excluded:
            parts.append(
                f"{self.damaged} damaged file tiles, {self.excluded}/{self.tiles_read} tiles excluded"
            )
        if self.refused:
            parts.append(f"tiling refused: {self.refused}")
        return "; ".join(parts)


def clear_message_problem(exc: BaseException, path: Path) -> str | None:
    """Why ``exc`` is not a clear error about ``path`` (None when it is one)."""
    from napari_wsirobust.errors import WsiRobustError

    text = str(exc)
    if not isinstance(exc, WsiRobustError):
        return f"not a WsiRobustError: {type(exc).__name__}: {text}"
    if "\n" in text.strip():
        return f"multi-line message: {text!r}"
    if not text.startswith(f"{path.name}:"):
        return f"message does not start with {path.name!r}: {text!r}"
    return None


def _view(slide: Any) -> None:
    """What a viewer reads: the smallest level and every level but the largest in full, and a few
    level-0 regions (top-left, centre, bottom-right)."""
    arrays = slide.arrays
    np.asarray(arrays[-1])
    for a in arrays[1:-1]:
        np.asarray(a)
    h, w = arrays[0].shape[:2]
    for y, x in ((0, 0), (h // 2 - REGION // 2, w // 2 - REGION // 2), (h - REGION, w - REGION)):
        y, x = max(0, y), max(0, x)
        arrays[0][y : y + REGION, x : x + REGION]


def _napari_reader(path: Path) -> None:
    """What ``viewer.open`` calls, and the first level napari draws (the smallest)."""
    from napari_wsirobust._reader import read_slides

    for data, kwargs, _ in read_slides(str(path)):
        np.asarray(data[-1] if kwargs["multiscale"] else data)


def _tiling(slide: Any, out: Outcome, max_tiles: int) -> None:
    from napari_wsirobust.errors import WsiRobustError
    from napari_wsirobust.io import UnreadableRegionError
    from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid, read_tile

    config = TilingConfig(min_tissue_fraction=0.1)
    try:
        # Without an MPP make_tile_grid refuses anyway; asking it first skips the tissue mask, which
        # then works at up to full resolution (about 10 s for the 2220 x 2967 SVS on 2 cores).
        tissue = detect_tissue(slide) if slide.mpp is not None else None
        grid = make_tile_grid(slide, config, Scope.whole(), tissue)
    except WsiRobustError as exc:
        out.refused = f"{type(exc).__name__}: {exc}"
        problem = clear_message_problem(exc, slide.path)
        if problem:
            out.problems.append(f"tiling: {problem}")
        return
    picks = (
        np.unique(np.linspace(0, len(grid) - 1, min(max_tiles, len(grid))).astype(int)) if len(grid) else []
    )
    for i in picks:
        out.tiles_read += 1
        try:
            read_tile(slide, grid, int(i), strict=True)
        except UnreadableRegionError:
            out.excluded += 1


def exercise(path: Path, max_tiles: int = MAX_TILES) -> Outcome:
    """Open ``path`` and put it through every stage (no timing: see :func:`guarded`)."""
    from napari_wsirobust.errors import WsiRobustError
    from napari_wsirobust.io import open_slide

    out = Outcome()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            slide = open_slide(path)
            with slide:
                out.stage = "view"
                _view(slide)
                out.stage = "napari reader"
                _napari_reader(path)
                out.stage = "tiling"
                _tiling(slide, out, max_tiles)
                out.damaged = len(slide.damaged_tiles)
                out.first_damage = slide.damaged_tiles[0].describe() if out.damaged else None
            out.stage = "done"
            out.kind = PARTIAL if out.damaged or out.excluded else CLEAN
        except WsiRobustError as exc:
            out.kind, out.error = ERROR, f"{type(exc).__name__}: {exc}"
            problem = clear_message_problem(exc, path)
            if problem:
                out.problems.append(f"{out.stage}: {problem}")
        except Exception as exc:  # a crash: recorded, never raised, so a run counts them all
            out.kind, out.error = CRASH, f"{type(exc).__name__}: {exc}"
            out.traceback = traceback.format_exc()
            out.problems.append(f"{out.stage}: crash {out.error}")
    out.warnings = [f"{w.category.__name__}: {w.message}" for w in caught]
    for w in caught:
        text = str(w.message)
        if w.category.__module__.startswith("napari_wsirobust") and not text.startswith(f"{path.name}:"):
            out.problems.append(f"warning does not name the file: {text!r}")
    return out


def guarded(run: Callable[[], Outcome], timeout: float = TIMEOUT_S) -> Outcome:
    """``run()`` in a daemon thread with wall time and peak memory growth; a run that does not end
    within ``timeout`` seconds gives a ``hang`` outcome (its thread is left behind)."""
    box: list[Outcome] = []
    thread = threading.Thread(target=lambda: box.append(run()), daemon=True)
    with PeakRSS() as mem:
        start = time.perf_counter()
        thread.start()
        thread.join(timeout)
        seconds = time.perf_counter() - start
    out = box[0] if box else Outcome(kind=HANG, problems=[f"did not finish within {timeout:.0f} s"])
    out.seconds = seconds
    out.rss_growth_mib = (mem.peak - mem.baseline) / 2**20
    return out


def run_variant(path: Path, timeout: float = TIMEOUT_S) -> Outcome:
    """Every stage for one file, timed and measured."""
    return guarded(lambda: exercise(path), timeout)


@dataclass(frozen=True)
class CliRun:
    """One ``wsirobust`` command: exit status and what it printed."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def _print_warning(
    message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def run_cli(args: list[str]) -> CliRun:
    """``napari_wsirobust.cli.main(args)`` in this process, output captured; warnings printed to
    standard error every time, as in a fresh process (even under pytest, which records them)."""
    from napari_wsirobust.cli import main

    out, err = io.StringIO(), io.StringIO()
    start = time.perf_counter()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.showwarning = _print_warning
        try:
            code = main(args)
        except SystemExit as exc:  # argparse refusing an option
            code = int(exc.code or 0)
    return CliRun(tuple(args), code, out.getvalue(), err.getvalue(), time.perf_counter() - start)


def cli_problems(run: CliRun, name: str, expect_warning: bool) -> list[str]:
    """What is wrong with a command's result on the slide file ``name``: exit 0 (with a warning
    line when tiles were left out), 2 with ``error: <message>`` or 1 with ``failed <slide>:
    <message>`` naming it (the slide refused, e.g. too many unreadable tiles); never 3, never a
    traceback."""
    problems = []
    lines = run.text.splitlines()
    if "Traceback (most recent call last)" in run.text:
        problems.append("printed a traceback")
    if run.code == 2:
        if not any(line.startswith("error: ") for line in run.stderr.splitlines()):
            problems.append("exit 2 without an 'error: <message>' line")
    elif run.code == 1:
        failed = [line for line in lines if line.startswith("failed")]
        if not failed or not all(f"{name}: " in line for line in failed):
            problems.append(f"exit 1 without a 'failed {name}: <reason>' line")
    elif run.code != 0:
        problems.append(f"exit status {run.code}")
    elif expect_warning and not any(("damaged" in line or "left out" in line) for line in lines):
        problems.append("tiles were left out but no warning line was printed")
    return problems


def cli_commands(path: Path, work: Path) -> list[list[str]]:
    """``extract`` then ``predict`` with the bundled demo head, both into ``work``."""
    from napari_wsirobust.models import demo_model_dir

    cache = str(work / "cache")
    return [
        ["extract", str(path), "--cache", cache, "--workers", "0"],
        [
            "predict",
            str(demo_model_dir()),
            str(path),
            "--out",
            str(work / "predictions.csv"),
            "--cache",
            cache,
        ],
    ]


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0
