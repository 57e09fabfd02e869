"""Per-slide work done before any tile is embedded: the tissue mask, the colour profile and the
harmonisation plan.

Both depend on the whole slide only (never on the scope), so they are computed once per slide and
kept: in memory for this process and on disk beside the feature cache (``<cache>/slides/``), keyed by
the slide's content identity, pixel size, colour mode and the parameters that make them. A reopened
slide has them at once. One computation per key runs at a time: a caller asking for a key that
another thread is computing (e.g. the background preparation started when a slide was opened) waits
for that result instead of computing it again; :meth:`SlidePrepStore.state` says which case applies.
Entries are written atomically; one that cannot be read is deleted and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np

from .._atomic import atomic_write_text
from ..io import WSI
from ..stain import (
    PROFILE_TILES,
    Harmonisation,
    HarmonisationError,
    SlidePlan,
    StainProfile,
    estimate_open_slide_profile,
    profile_from_dict,
)
from ..tiling import TilingConfig, TissueMask, TissueMaskConfig, detect_tissue, make_tile_grid

PREP_FORMAT = 1
MEMORY_ENTRIES = 16
PrepState = Literal["ready", "running", "missing"]
T = TypeVar("T")
DEFAULT_TISSUE = TissueMaskConfig()

TISSUE_MESSAGES: dict[PrepState, str] = {  # what the tissue stage says it does, by the entry's state
    "ready": "tissue map of this slide at hand",
    "running": "waiting for the tissue map started in the background",
    "missing": "finding tissue",
}
PLAN_MESSAGES: dict[PrepState, str] = {  # the same for the harmonisation plan ({site}: its reference)
    "ready": "matching the slide's colours to site {site}",
    "running": "waiting for the slide's harmonisation plan started in the background",
    "missing": "estimating the slide's harmonisation plan (to site {site})",
}

_memory: OrderedDict[str, object] = OrderedDict()
_running: dict[str, Future[object]] = {}
_lock = threading.Lock()


class SlidePrepStore:
    """Tissue masks, colour profiles and harmonisation plans of slides, in memory and under ``root`` on
    disk."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    # -- keys ---------------------------------------------------------------------------------------
    def tissue_key(self, slide: WSI, config: TissueMaskConfig = DEFAULT_TISSUE) -> str:
        return _digest(
            {
                "kind": "tissue",
                "format": PREP_FORMAT,
                "slide": slide.content_id(),
                "mpp": slide.mpp,
                "color": slide.metadata.color,
                "config": asdict(config),
            }
        )

    def plan_key(self, slide: WSI, harmonise: Harmonisation) -> str:
        return _digest({"kind": "plan", "tissue": self.tissue_key(slide), "harmonise": harmonise.identity()})

    def profile_key(self, slide: WSI) -> str:
        return _digest({"kind": "profile", "tissue": self.tissue_key(slide), "tiles": PROFILE_TILES})

    def state(self, key: str) -> PrepState:
        """ "ready" (in memory or on disk), "running" (being computed by another caller) or "missing"."""
        with _lock:
            if key in _memory:
                return "ready"
            if key in _running:
                return "running"
        return "ready" if self._path(key, "npz").exists() or self._path(key, "json").exists() else "missing"

    # -- values -------------------------------------------------------------------------------------
    def tissue(self, slide: WSI, config: TissueMaskConfig = DEFAULT_TISSUE) -> TissueMask:
        """The slide's tissue mask (computed with :func:`~napari_wsirobust.tiling.detect_tissue`)."""
        key = self.tissue_key(slide, config)
        path = self._path(key, "npz")
        return self._get(key, lambda: _read_tissue(path), lambda: detect_tissue(slide, config),
                         lambda mask: _write_tissue(path, mask))  # fmt: skip

    def plan(self, slide: WSI, harmonise: Harmonisation) -> SlidePlan:
        """The slide's harmonisation plan for ``harmonise`` (from the default tissue mask)."""
        key = self.plan_key(slide, harmonise)
        path = self._path(key, "json")

        def compute() -> SlidePlan:
            return harmonise.plan_for(slide, self.tissue(slide))

        return self._get(key, lambda: _read_plan(path), compute,
                         lambda plan: atomic_write_text(path, json.dumps(plan.to_dict())))  # fmt: skip

    def profile(self, slide: WSI) -> StainProfile:
        """The slide's colour profile (stains, glass, sharpness, JPEG quality) from the tissue tiles of
        the default tiling: the figures a harmonisation plan starts from."""
        key = self.profile_key(slide)
        path = self._path(key, "json")

        def compute() -> StainProfile:
            grid = make_tile_grid(slide, TilingConfig(), tissue=self.tissue(slide))
            return estimate_open_slide_profile(slide, PROFILE_TILES, grid=grid)

        return self._get(key, lambda: _read_profile(path), compute,
                         lambda profile: atomic_write_text(path, json.dumps(profile.to_dict())))  # fmt: skip

    def _path(self, key: str, suffix: str) -> Path:
        return self.root / key[:2] / f"{key}.{suffix}"

    def _get(
        self,
        key: str,
        load: Callable[[], T | None],
        compute: Callable[[], T],
        save: Callable[[T], object],
    ) -> T:
        with _lock:
            if key in _memory:
                _memory.move_to_end(key)
                return _memory[key]  # type: ignore[return-value]
            future = _running.get(key)
            owner = future is None
            if owner:
                future = _running[key] = Future()
        assert future is not None
        if not owner:
            return future.result()  # type: ignore[return-value]
        try:
            value = load()
            if value is None:
                value = compute()
                try:
                    save(value)
                except OSError as exc:  # a read-only cache still analyses, it only forgets
                    warnings.warn(f"cannot keep the slide's {key[:8]} entry on disk: {exc}", stacklevel=3)
        except BaseException as exc:
            with _lock:
                _running.pop(key, None)
            future.set_exception(exc)
            raise
        with _lock:
            _memory[key] = value
            while len(_memory) > MEMORY_ENTRIES:
                _memory.popitem(last=False)
            _running.pop(key, None)
        future.set_result(value)
        return value


def forget_in_memory() -> None:
    """Drop the in-memory entries (the disk entries stay), as a new process would start."""
    with _lock:
        _memory.clear()


def _digest(payload: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]


def _write_tissue(path: Path, tissue: TissueMask) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial.npz")
    np.savez_compressed(
        tmp,
        mask=np.packbits(tissue.mask, axis=None),
        shape=np.asarray(tissue.mask.shape, np.int64),
        downsample=np.asarray(tissue.downsample, np.float64),
        saturation_threshold=np.float64(tissue.saturation_threshold),
        glass_rgb=np.asarray(tissue.glass_rgb, np.float64),
    )
    os.replace(tmp, path)


def _read_tissue(path: Path) -> TissueMask | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            shape = tuple(int(v) for v in data["shape"])
            mask = np.unpackbits(data["mask"], count=int(np.prod(shape))).reshape(shape).astype(bool)
            dx, dy = (float(v) for v in data["downsample"])
            r, g, b = (float(v) for v in data["glass_rgb"])
            return TissueMask(mask, (dx, dy), float(data["saturation_threshold"]), (r, g, b))
    except (OSError, ValueError, KeyError) as exc:
        return _discard(path, exc)


def _read_plan(path: Path) -> SlidePlan | None:
    if not path.exists():
        return None
    try:
        return SlidePlan.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, HarmonisationError) as exc:
        return _discard(path, exc)


def _read_profile(path: Path) -> StainProfile | None:
    if not path.exists():
        return None
    try:
        return profile_from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, HarmonisationError) as exc:
        return _discard(path, exc)


def _discard(path: Path, exc: BaseException) -> None:
    warnings.warn(f"discarding damaged slide cache entry {path.name}: {exc}", stacklevel=4)
    path.unlink(missing_ok=True)
    return None
