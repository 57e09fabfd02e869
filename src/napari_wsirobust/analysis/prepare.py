"""Work started in the background as soon as a slide is opened: the chosen model and its encoder
loaded, the slide's tissue mask and, for a model that harmonises tiles, its harmonisation plan
(no Qt).

They are computed into the feature cache's :class:`~napari_wsirobust.features.SlidePrepStore`, so
the first analysis of the slide finds them ready (or waits for the one running, and says so).
Failures are only logged here: the analysis that needs the result computes it again and reports
the error to the user with its own message.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from ..features import FeatureCache
from ..io import open_slide
from ..tiling import require_mpp
from .region import Resources

LOG = logging.getLogger("napari_wsirobust")


@dataclass(frozen=True)
class PrepRequest:
    """Which slide to prepare, read as the analysis will read it."""

    slide_path: str
    model_dir: str | None = None  # None: the tissue mask only (no model chosen yet)
    mpp: tuple[float, float] | None = None
    cache_dir: str | None = None
    encoder: str | None = None  # None: the model's own
    device: str = "auto"


def prepare_slide(request: PrepRequest, resources: Resources) -> None:
    """Load the model into ``resources`` and, in a second thread meanwhile, its encoder; compute the
    slide's tissue mask and, when the model harmonises, its plan, else (for the scanner check) its colour
    profile when the model saved its training sites' profiles (all kept on disk)."""
    head = resources.head(request.model_dir) if request.model_dir else None
    loader = None
    if head is not None:  # building the encoder overlaps the slide's work: two cores at work
        name = request.encoder or head.config.encoder_name
        loader = threading.Thread(
            target=_load_encoder, args=(resources, name, request.device), name="wsirobust-encoder"
        )
        loader.start()
    try:
        harmonise = head.harmonisation() if head is not None else None
        color = head.config.color if head is not None else "as-scanned"
        cache = FeatureCache(request.cache_dir)
        with open_slide(request.slide_path, mpp=request.mpp, color=color) as slide:
            slide.require_rgb()
            require_mpp(slide)
            cache.prep.tissue(slide)
            if harmonise is not None:
                cache.prep.plan(slide, harmonise)
            elif head is not None and head.site_profiles():  # for the unlike-training check
                cache.prep.profile(slide)
    finally:
        if loader is not None:
            loader.join()


def _load_encoder(resources: Resources, name: str, device: str) -> None:
    try:
        resources.encoder(name, None, False, device)
    except Exception as exc:  # the analysis reports it to the user
        LOG.info("background loading of encoder %s stopped: %s", name, exc)


class BackgroundPreparation:
    """Prepares slides one at a time in a background thread; each request is prepared once."""

    def __init__(self, resources: Resources, initializer: Callable[[], object] | None = None) -> None:
        """``initializer`` runs first in the background thread (the docks lower its CPU priority)."""
        self._resources = resources
        self._pool = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="wsirobust-prepare", initializer=initializer
        )
        self._started: dict[PrepRequest, Future[None]] = {}

    def submit(self, request: PrepRequest) -> Future[None]:
        """Start preparing ``request`` (or return the job already started for it)."""
        job = self._started.get(request)
        if job is None:
            job = self._started[request] = self._pool.submit(self._run, request)
        return job

    def _run(self, request: PrepRequest) -> None:
        try:
            prepare_slide(request, self._resources)
        except Exception as exc:  # the analysis reports it to the user
            LOG.info("background preparation of %s stopped: %s", request.slide_path, exc)
            self._started.pop(request, None)  # a later request may try again (e.g. after an MPP override)

    def shutdown(self) -> None:
        """Drop queued preparations; a running one finishes in its thread."""
        self._pool.shutdown(wait=False, cancel_futures=True)
