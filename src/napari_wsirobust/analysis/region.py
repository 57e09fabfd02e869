"""Run an encoder and a trained MIL head on one scope of one slide.

The scope is the visible canvas (a rectangle in µm), drawn shapes (polygons in µm) or the whole
slide. Tiles are embedded through the feature cache, keyed by tile position, so analysing a moved
viewport only embeds the tiles not seen before. :func:`analyse_region` is a generator of
:class:`AnalysisProgress` (stop iterating to cancel: nothing is left half-made, tiles already
embedded stay cached) returning a :class:`RegionAnalysis`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..encoders import TileEncoder, create_encoder
from ..errors import WsiRobustError
from ..features import (
    DEFAULT_MAX_UNREADABLE_SHARE,
    PLAN_MESSAGES,
    TISSUE_MESSAGES,
    ExcludedTiles,
    FeatureCache,
    SlidePrepStore,
    cache_key,
    check_unreadable_share,
    select_device,
    split_unreadable,
)
from ..io import WSI, open_slide
from ..mil import BagPrediction, TrainedHead, slide_scanner_check
from ..stain import Harmonisation, ScannerCheck, SlidePlan
from ..tiling import (
    Scope,
    TileGrid,
    TilingConfig,
    TissueMask,
    make_tile_grid,
    require_mpp,
)
from .progress import relay


class AnalysisError(WsiRobustError, RuntimeError):
    """An analysis cannot run; the message says why and what to do."""


class NoTissueError(AnalysisError):
    """The scope holds no tissue tile."""


@dataclass(frozen=True)
class AnalysisRequest:
    """What to analyse and with what. ``encoder`` None: the encoder the head was trained on."""

    slide_path: str
    model_dir: str
    scope: Scope = Scope()
    encoder: str | None = None
    encoder_weights: str | None = None
    allow_hub: bool = False
    mpp: tuple[float, float] | None = None  # pixel-size override (e.g. set in the Slide info widget)
    cache_dir: str | None = None
    device: str = "auto"
    site: str | None = None  # for heads trained with per-site standardisation
    batch_size: int = 32
    max_unreadable_share: float = DEFAULT_MAX_UNREADABLE_SHARE  # refuse above this share of damaged tiles


STAGES = ("loading", "tissue", "plan", "embedding", "head")


@dataclass(frozen=True)
class AnalysisProgress:
    stage: str  # one of STAGES
    done: int = 0
    total: int = 0
    message: str = ""


@dataclass
class RegionAnalysis:
    """The outcome: the scope's tiles (grid order) and the head's prediction over them."""

    request: AnalysisRequest
    slide_name: str
    grid: TileGrid
    prediction: BagPrediction
    label_names: list[str]
    encoder_name: str
    n_embedded: int  # tiles that had to be embedded (the others came from the cache)
    seconds: float
    features: np.ndarray | None = field(default=None, repr=False)  # (N, D) tile embeddings, grid order
    excluded: ExcludedTiles | None = None  # tiles left out: they overlap damaged file tiles
    scanner: ScannerCheck | None = None  # the slide's profile against the training sites' (None: unknown)

    @property
    def attention(self) -> np.ndarray:
        return self.prediction.attention

    @property
    def predicted_label(self) -> str:
        return self.label_names[self.prediction.label_index]

    @property
    def probability(self) -> float:
        return float(self.prediction.probabilities.max())

    def top_k(self, k: int) -> np.ndarray:
        """Indices of the ``k`` most attended tiles, most attended first."""
        k = max(0, min(int(k), len(self.attention)))
        return np.argsort(-self.attention, kind="stable")[:k]

    def attention_rank(self) -> np.ndarray:
        """Attention as a percentile rank in (0, 1] (1 = most attended), comparable across bag sizes."""
        return percentile_rank(self.attention)


def percentile_rank(values: np.ndarray) -> np.ndarray:
    """Each value's rank as a fraction in (0, 1] (1 = largest; ties in order of appearance)."""
    n = len(values)
    ranks = np.empty(n, np.float32)
    ranks[np.argsort(values, kind="stable")] = np.arange(1, n + 1, dtype=np.float32) / n
    return ranks


class Resources:
    """Encoders and heads kept between runs (one analysis at a time uses them). Tissue masks and
    harmonisation plans are kept by the feature cache's :class:`~napari_wsirobust.features.SlidePrepStore`."""

    def __init__(self) -> None:
        self._encoders: dict[tuple[str, str | None, str], TileEncoder] = {}
        self._heads: dict[tuple[str, float], TrainedHead] = {}
        self._lock = threading.Lock()  # a background preparation may load them while an analysis asks

    def head(self, model_dir: str) -> TrainedHead:
        path = Path(model_dir)
        if not path.exists():
            raise AnalysisError(f"model folder not found: {path}")
        stamp = max((p.stat().st_mtime for p in path.rglob("*") if p.is_file()), default=0.0)
        key = (str(path.resolve()), stamp)
        with self._lock:
            if key not in self._heads:
                try:
                    self._heads[key] = TrainedHead.load(path)
                except (OSError, ValueError) as exc:
                    raise AnalysisError(f"cannot load the model in {path}: {exc}") from exc
            return self._heads[key]

    def encoder(self, name: str, weights: str | None, allow_hub: bool, device: str) -> TileEncoder:
        key = (name, weights, device)
        with self._lock:
            if key not in self._encoders:
                self._encoders[key] = create_encoder(
                    name, weights, allow_hub=allow_hub, device=select_device(device)
                )
            return self._encoders[key]


def _tiling_for(head: TrainedHead, encoder: TileEncoder) -> TilingConfig:
    tiling = head.tiling_config()
    if tiling.tile_size != encoder.spec.input_size:
        raise AnalysisError(
            f"the model was trained on {tiling.tile_size}-px tiles but {encoder.info.name} takes "
            f"{encoder.spec.input_size}-px tiles"
        )
    return tiling


def analyse_region(
    request: AnalysisRequest, resources: Resources | None = None
) -> Generator[AnalysisProgress, None, RegionAnalysis]:
    """Tile the scope, embed (cache first), run the head. Raises :class:`AnalysisError` (or a
    :class:`~napari_wsirobust.io.SlideError` for unreadable slides) with a message for the user."""
    resources = resources or Resources()
    start = time.perf_counter()
    yield AnalysisProgress("loading", message="loading the model and the encoder")
    head = resources.head(request.model_dir)
    encoder_name = request.encoder or head.config.encoder_name
    encoder = resources.encoder(encoder_name, request.encoder_weights, request.allow_hub, request.device)
    try:
        head.check_features(encoder.info.name, encoder.info.embed_dim)
    except ValueError as exc:
        raise AnalysisError(str(exc)) from exc
    tiling = _tiling_for(head, encoder)
    try:
        harmonise = head.harmonisation()
    except ValueError as exc:
        raise AnalysisError(f"the model's harmonisation reference cannot be used: {exc}") from exc
    cache = FeatureCache(request.cache_dir)
    with open_slide(request.slide_path, mpp=request.mpp, color=head.config.color) as slide:
        slide.require_rgb()
        require_mpp(slide)  # before the tissue mask: a slide without MPP is refused at once
        tissue = yield from slide_tissue(cache.prep, slide)
        grid = make_tile_grid(slide, tiling, request.scope, tissue)
        if len(grid) == 0:
            where = "the whole slide" if request.scope.kind == "whole" else "the chosen region"
            raise NoTissueError(
                f"no tissue tiles in {where} of {Path(request.slide_path).name} "
                f"({tiling.tile_size} px tiles at {tiling.target_mpp:g} µm/px, at least "
                f"{tiling.min_tissue_fraction:.0%} tissue): move or widen the region"
            )
        key = cache_key(slide, grid, encoder, harmonise=harmonise)
        cached = cache.load_aligned(key, grid)
        n_embedded = 0
        if cached is None:
            if harmonise is not None:
                yield from slide_plan(cache.prep, slide, harmonise)
            embedding = cache.embed(slide, grid, encoder, harmonise=harmonise, batch_size=request.batch_size)
            totals: list[int] = []

            def report(progress: Any) -> AnalysisProgress:
                totals.append(progress.total)
                return AnalysisProgress(
                    "embedding",
                    progress.done,
                    progress.total,
                    f"embedding {progress.done}/{progress.total} new tiles ({len(grid)} in scope)",
                )

            features = yield from relay(embedding, report)
            n_embedded = totals[-1] if totals else 0
        else:
            features = cached
        grid, features, excluded = split_unreadable(grid, features)
        check_unreadable_share(excluded, Path(request.slide_path).name, request.max_unreadable_share)
        if len(grid) == 0:
            raise NoTissueError(
                f"{Path(request.slide_path).name}: {excluded.describe()}; nothing left to analyse"
            )
        yield AnalysisProgress("head", len(grid), len(grid), "running the MIL head")
        prediction = head.predict(features, request.site)
        name = Path(request.slide_path).name
        scanner = slide_scanner_check(head, cache.prep, slide)
    return RegionAnalysis(
        request=request,
        slide_name=name,
        grid=grid,
        prediction=prediction,
        label_names=list(head.label_names),
        encoder_name=encoder.info.name,
        n_embedded=n_embedded,
        seconds=time.perf_counter() - start,
        features=features,
        excluded=excluded,
        scanner=scanner,
    )


def slide_tissue(prep: SlidePrepStore, slide: WSI) -> Generator[AnalysisProgress, None, TissueMask]:
    """The slide's tissue mask from ``prep``, saying whether it is found, awaited or at hand."""
    yield AnalysisProgress("tissue", message=TISSUE_MESSAGES[prep.state(prep.tissue_key(slide))])
    return prep.tissue(slide)


def slide_plan(
    prep: SlidePrepStore, slide: WSI, harmonise: Harmonisation
) -> Generator[AnalysisProgress, None, SlidePlan]:
    """The slide's harmonisation plan from ``prep``, saying whether it is estimated, awaited or at hand."""
    message = PLAN_MESSAGES[prep.state(prep.plan_key(slide, harmonise))]
    yield AnalysisProgress("plan", message=message.format(site=harmonise.site or "?"))
    return prep.plan(slide, harmonise)


def visible_rect_um(
    center_yx: tuple[float, ...], canvas_size_hw: tuple[int, int], zoom: float
) -> tuple[float, float, float, float]:
    """(y0, x0, y1, x1) in world µm of what a 2-D canvas shows (napari camera centre, canvas size in
    screen pixels, zoom in screen pixels per µm)."""
    if zoom <= 0:
        raise ValueError(f"zoom must be positive, got {zoom}")
    cy, cx = float(center_yx[-2]), float(center_yx[-1])
    half_h, half_w = canvas_size_hw[0] / zoom / 2, canvas_size_hw[1] / zoom / 2
    return (cy - half_h, cx - half_w, cy + half_h, cx + half_w)
