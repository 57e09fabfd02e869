"""Progress records of long per-slide work, handed to an optional callback (no terminal code here).

Compute that walks slides (feature extraction, prediction, training's embedding, diagnostics, the
synthetic cohort) takes ``progress: ProgressCallback | None`` and calls it with :class:`SlideProgress`
records: a slide's stages as they start (``tissue``, ``plan``, ``embedding`` once per batch, ``head``,
named as in the Analyse dock), and one :data:`FINISHED` record per slide giving the run's count. How
the records are shown (bars, plain lines, nothing) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "EMBEDDING",
    "FINISHED",
    "HEAD",
    "PLAN",
    "PROFILE",
    "RENDER",
    "TISSUE",
    "ProgressCallback",
    "SlideProgress",
    "report",
]

TISSUE = "tissue"  # finding the tissue (or taking the kept tissue map)
PLAN = "plan"  # estimating the slide's harmonisation plan
EMBEDDING = "embedding"  # embedding tiles: ``done`` of ``total`` tiles, ``elapsed_s`` since the start
HEAD = "head"  # running the MIL head
PROFILE = "profile"  # estimating the slide's colour/stain profile
RENDER = "render"  # writing a synthetic slide
FINISHED = "finished"  # the run: ``done`` of ``total`` slides finished (0 when the run starts)


@dataclass(frozen=True)
class SlideProgress:
    """One step of a run over slides.

    ``slide`` is the slide's file name ("" for the record that starts a run); ``stage`` one of the
    constants above; ``done`` of ``total`` the items of the stage (tiles while embedding; for
    :data:`FINISHED`, slides of the run); ``elapsed_s`` the stage's own clock where it keeps one (0
    otherwise); ``message`` says what is happening or, for :data:`FINISHED`, the slide's outcome.
    """

    slide: str
    stage: str
    done: int = 0
    total: int = 0
    elapsed_s: float = 0.0
    message: str = ""


ProgressCallback = Callable[[SlideProgress], None]


def report(
    progress: ProgressCallback | None,
    slide: str,
    stage: str,
    done: int = 0,
    total: int = 0,
    elapsed_s: float = 0.0,
    message: str = "",
) -> None:
    """Call ``progress`` (when given) with a :class:`SlideProgress` of these fields."""
    if progress is not None:
        progress(SlideProgress(slide, stage, done, total, elapsed_s, message))
