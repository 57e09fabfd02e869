"""Progress of the long ``wsirobust`` commands on standard error (used by :mod:`.cli` only).

A :class:`ProgressDisplay` is the ``progress`` callback the command hands to compute: it turns
:class:`~napari_wsirobust.progress.SlideProgress` records into two tqdm bars on a terminal (the slide
at hand, its stage, tiles/s and time left; and the slides of the run), into plain flushed lines when
standard error is a file or a pipe (one per stage change, every few seconds within a stage, one per
finished slide), or into nothing with ``--quiet``. The command's result lines go through
:meth:`ProgressDisplay.echo`, so they land on standard output unchanged and never inside a bar.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Any, TextIO

from .progress import EMBEDDING, FINISHED, RENDER, SlideProgress

UNITS = {EMBEDDING: "tiles", RENDER: "rows"}  # the stages that count something, and what

INTERVAL_S = 5.0  # plain lines: at most one per stage this often (stage changes always print)
_COUNTING = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
_WAITING = "{desc} [{elapsed}{postfix}]"


def duration(seconds: float) -> str:
    """``seconds`` for a person: "42 s", "3 min 05 s", "2 h 07 min"."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _terminal_sized(stream: TextIO) -> bool:
    """True when ``stream`` is a terminal that reports a size (columns and lines)."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return size.columns > 0 and size.lines > 0


def _rate_and_left(done: int, total: int, elapsed_s: float) -> tuple[float, float] | None:
    """(items per second, seconds left), or None before there is a rate."""
    if done <= 0 or elapsed_s <= 0:
        return None
    rate = done / elapsed_s
    return rate, max(0, total - done) / rate


class _Plain:
    """Plain lines on ``stream``; results printed as they are."""

    def __init__(self, stream: TextIO, interval_s: float, clock: Callable[[], float]) -> None:
        self.stream, self.interval_s, self.clock = stream, interval_s, clock
        self._key: tuple[str, str, str] | None = None  # (slide, stage, message) shown last
        self._last: tuple[float, SlideProgress | None] = (0.0, None)  # when, and what, printed last
        self._run_start = clock()

    def show(self, p: SlideProgress) -> None:
        if p.stage == FINISHED:
            self._finished(p)
            return
        key = (p.slide, p.stage, p.message)
        now = self.clock()
        if key == self._key:  # the same stage: its last record, or one every interval_s
            when, last = self._last
            final = p.total > 0 and p.done >= p.total
            if p == last or not (final or now - when >= self.interval_s):
                return
        self._key, self._last = key, (now, p)
        self._line(self.stage_line(p))

    def _finished(self, p: SlideProgress) -> None:
        self._key = None
        if p.done == 0:
            self._run_start = self.clock()
            self._line(f"slides 0/{p.total}")
            return
        self._line(self.run_line(p, self.clock() - self._run_start))

    @staticmethod
    def stage_line(p: SlideProgress) -> str:
        unit = UNITS.get(p.stage)
        if unit is None or p.total <= 0 or (p.done == 0 and p.message):
            return f"{p.slide}: {p.stage}" + (f" - {p.message}" if p.message else "")
        line = f"{p.slide}: {p.stage} {p.done}/{p.total} {unit}"
        speed = _rate_and_left(p.done, p.total, p.elapsed_s)
        if speed is not None:
            line += f", {speed[0]:.1f} {unit}/s, {duration(speed[1])} left"
        return line + (f" ({p.message})" if p.message else "")

    @staticmethod
    def run_line(p: SlideProgress, elapsed_s: float) -> str:
        line = f"slides {p.done}/{p.total}: {p.slide} {p.message}".rstrip()
        left = _rate_and_left(p.done, p.total, elapsed_s)
        return line + f", {duration(elapsed_s)} elapsed" + (f", {duration(left[1])} left" if left else "")

    def _line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def echo(self, text: str, file: TextIO) -> None:
        print(text, file=file, flush=True)

    def close(self) -> None:
        pass


class _Quiet(_Plain):
    """No progress at all; results printed as they are."""

    def show(self, p: SlideProgress) -> None:
        pass


class _Bars(_Plain):
    """tqdm bars on ``stream``: the run's slides (position 0) and the slide at hand (position 1)."""

    def __init__(self, stream: TextIO, interval_s: float, clock: Callable[[], float]) -> None:
        super().__init__(stream, interval_s, clock)
        from tqdm import tqdm

        self._tqdm = tqdm
        self._run: Any = None
        self._slide: Any = None
        self._saved_showwarning = warnings.showwarning
        warnings.showwarning = self._show_warning  # a warning printed between the bars, not through them

    def show(self, p: SlideProgress) -> None:
        if p.stage == FINISHED:
            self._finished(p)
        else:
            self._stage(p)

    def _bar(self, position: int, leave: bool, **kwargs: Any) -> Any:
        sized = _terminal_sized(self.stream)  # a terminal of no size (some ptys) would show no bar
        return self._tqdm(
            file=self.stream,
            position=position,
            leave=leave,
            dynamic_ncols=sized,
            ncols=None if sized else 100,
            nrows=None if sized else 20,
            disable=False,
            **kwargs,
        )

    def _finished(self, p: SlideProgress) -> None:
        run = self._run
        if run is None or p.done == 0 or p.total != run.total or p.done < run.n:
            if run is not None:
                run.close()
            self._run = run = self._bar(0, True, total=p.total, desc="slides", unit="slide")
        if p.slide:
            run.set_postfix_str(f"{p.slide} {p.message}".rstrip(), refresh=False)
        run.update(p.done - run.n)
        run.refresh()

    def _stage(self, p: SlideProgress) -> None:
        key = (p.slide, p.stage, p.message)
        new = key != self._key or self._slide is None
        if new:  # a bar of its own per stage: its unit, format and clock
            self._key = key
            if self._slide is not None:
                self._slide.close()
            counting = p.stage in UNITS and p.total > 0
            self._slide = self._bar(
                1,
                False,
                total=p.total if counting else None,
                desc=f"{p.slide} {p.stage}",
                unit=UNITS.get(p.stage, "it"),
                bar_format=_COUNTING if counting else _WAITING,
                postfix=p.message or None,
            )
            self._slide.start_t = self._slide.last_print_t = time.time() - p.elapsed_s  # the stage's clock
        bar = self._slide
        bar.update(p.done - bar.n)  # refreshed at tqdm's pace
        if new or (p.total and p.done >= p.total):
            bar.refresh()

    def echo(self, text: str, file: TextIO) -> None:
        self._tqdm.write(text, file=file)
        file.flush()

    def _show_warning(
        self, message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None
    ) -> None:
        text = warnings.formatwarning(message, category, filename, lineno, line)
        self._tqdm.write(text.rstrip("\n"), file=file or self.stream)

    def close(self) -> None:
        warnings.showwarning = self._saved_showwarning
        for bar in (self._slide, self._run):
            if bar is not None:
                bar.close()
        self._slide = self._run = None


class ProgressDisplay:
    """Shows progress records on ``stream`` (default: standard error at construction): tqdm bars
    when it is a terminal (``tty`` None: ask the stream), plain lines otherwise, nothing when
    ``quiet``. Call it with each :class:`~napari_wsirobust.progress.SlideProgress`; print result
    lines with :meth:`echo`; close it (or use it as a context manager) when the command ends."""

    def __init__(
        self,
        quiet: bool = False,
        stream: TextIO | None = None,
        tty: bool | None = None,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            isatty = getattr(self.stream, "isatty", None)
            tty = bool(isatty and isatty())
        view = _Quiet if quiet else _Bars if tty else _Plain
        self._view: _Plain = view(self.stream, interval_s, clock)

    def __call__(self, progress: SlideProgress) -> None:
        self._view.show(progress)

    def echo(self, text: str, file: TextIO | None = None) -> None:
        """Print a result line (standard output by default) or a warning (``file=sys.stderr``)."""
        self._view.echo(text, file if file is not None else sys.stdout)

    def close(self) -> None:
        self._view.close()

    def __enter__(self) -> ProgressDisplay:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
