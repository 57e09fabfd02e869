"""Feature extraction over many slides: one slide per task on Dask distributed.

A ``LocalCluster`` is started by default (processes, one thread each); pass the address of an
existing scheduler (for example one started by dask-jobqueue on a cluster) to use it instead.
Slides whose features are already cached are skipped, so an interrupted run resumes; a slide that
fails is reported with its error and the others go on. A slide's pixel size override (``mpp``, µm/px,
for files without one or with a wrong one) travels with its job.

An optional ``progress`` callback receives :class:`~napari_wsirobust.progress.SlideProgress` records:
each slide's stages (tissue, plan, embedding per batch) when it runs in this process, and one
``finished`` record per slide however it ran (from worker processes, that is all that comes back).
"""

from __future__ import annotations

import csv
import time
from collections.abc import Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..encoders import TileEncoder
from ..errors import InputError, user_message
from ..io import WSI
from ..progress import EMBEDDING, FINISHED, PLAN, TISSUE, ProgressCallback, report
from ..stain import Harmonisation, ScannerAugmentation
from ..tiling import (
    Scope,
    TileGrid,
    TilingConfig,
    TissueMask,
    TissueMaskConfig,
    make_tile_grid,
    parse_mpp,
    require_mpp,
)
from .cache import FeatureCache, cache_key, feature_attrs
from .h5 import FeatureSet, write_feature_h5
from .pipeline import EmbedProgress
from .slide_prep import PLAN_MESSAGES, TISSUE_MESSAGES, SlidePrepStore
from .unreadable import ExcludedTiles, split_unreadable


@dataclass(frozen=True)
class ExtractConfig:
    """Everything a worker needs to embed one slide (plain data: it is sent to other processes)."""

    cache_dir: str
    encoder: str = "effnet-lite0-imagenet"
    weights: str | None = None
    allow_hub: bool = False
    tiling: TilingConfig = field(default_factory=TilingConfig)
    tissue: TissueMaskConfig = field(default_factory=TissueMaskConfig)
    device: str = "auto"
    batch_size: int = 32
    h5_dir: str | None = None  # also export <slide stem>.h5 in the CLAM/TRIDENT layout
    views: tuple[ScannerAugmentation, ...] = ()  # scanner-swapped views also embedded and cached
    harmonise: Harmonisation | None = None  # tiles re-rendered into this reference profile first
    color: str = "as-scanned"  # "srgb": the slides' embedded ICC profiles applied to every tile


@dataclass(frozen=True)
class SlideResult:
    """Outcome for one slide: ``status`` is "extracted", "cached" or "failed"."""

    slide: str
    status: str
    n_tiles: int = 0
    seconds: float = 0.0
    error: str = ""
    warning: str = ""  # e.g. tiles left out because they overlap damaged file tiles


@lru_cache(maxsize=2)
def encoder_for(name: str, weights: str | None, allow_hub: bool, device: str):  # type: ignore[no-untyped-def]
    """One encoder per worker process, reused across its slides."""
    from ..encoders import create_encoder
    from .pipeline import select_device

    return create_encoder(name, weights, allow_hub=allow_hub, device=select_device(device))


def _tiling_for(config: ExtractConfig, encoder: TileEncoder) -> TilingConfig:
    tiling = config.tiling
    if tiling.tile_size == encoder.spec.input_size:
        return tiling
    return TilingConfig(
        tile_size=encoder.spec.input_size,
        target_mpp=tiling.target_mpp,
        overlap=tiling.overlap,
        min_tissue_fraction=tiling.min_tissue_fraction,
    )


@dataclass
class SlideFeatures:
    """One slide's whole-slide tile grid and the features of its tiles (grid order)."""

    path: str
    grid: TileGrid
    features: np.ndarray  # (N, D) float32
    view: str = ""  # "" for the slide as scanned, else the view's identity
    encoder: str = ""
    weights_id: str = ""
    from_cache: bool = True  # False when tiles had to be embedded
    excluded: ExcludedTiles | None = None  # tiles left out: they overlap damaged file tiles


def _tissue_stage(
    prep: SlidePrepStore, slide: WSI, config: TissueMaskConfig, progress: ProgressCallback | None, name: str
) -> TissueMask:
    """The slide's tissue mask from ``prep``, saying first whether it is found, awaited or at hand."""
    state = prep.state(prep.tissue_key(slide, config))
    report(progress, name, TISSUE, message=TISSUE_MESSAGES[state])
    return prep.tissue(slide, config)


def _plan_stage(
    prep: SlidePrepStore, slide: WSI, harmonise: Harmonisation, progress: ProgressCallback | None, name: str
) -> None:
    """Compute (or wait for, or take) the slide's harmonisation plan, saying first which."""
    state = prep.state(prep.plan_key(slide, harmonise))
    message = PLAN_MESSAGES[state].format(site=harmonise.site or "?")
    report(progress, name, PLAN, message=message)
    prep.plan(slide, harmonise)


def _embedded(
    embedding: Generator[EmbedProgress, None, np.ndarray],
    progress: ProgressCallback | None,
    name: str,
    message: str,
) -> np.ndarray:
    """Drive ``embedding`` to its features, passing each batch on as an ``embedding`` record."""
    while True:
        try:
            step = next(embedding)
        except StopIteration as stop:
            return stop.value
        report(progress, name, EMBEDDING, step.done, step.total, step.elapsed_s, message)


def slide_features(
    path: str,
    config: ExtractConfig,
    views: tuple[ScannerAugmentation | None, ...] = (None,),
    embed: bool = True,
    mpp: float | None = None,
    progress: ProgressCallback | None = None,
) -> list[SlideFeatures] | None:
    """Whole-slide features of one slide, one :class:`SlideFeatures` per entry of ``views`` (None:
    the slide as scanned, or harmonised with ``config.harmonise``), from the cache; missing tiles are
    embedded when ``embed``, otherwise None is returned unless everything is cached. The slide is
    opened (with the pixel size ``mpp`` µm/px replacing its file's, when given) and tiled once.
    ``progress`` gets the slide's ``tissue``, ``plan`` (harmonised tiles to embed) and ``embedding``
    records. Raises on unreadable slides."""
    from ..io import open_slide

    name = Path(path).name
    harmonise = config.harmonise
    if harmonise is not None and any(v is not None for v in views):
        raise ValueError("scanner-swapped views of harmonised slides are not supported")
    encoder = encoder_for(config.encoder, config.weights, config.allow_hub, config.device)
    info = encoder.info
    cache = FeatureCache(config.cache_dir)
    out: list[SlideFeatures] = []
    with open_slide(path, mpp=mpp, color=config.color) as slide:
        slide.require_rgb()
        require_mpp(slide)  # before the tissue mask: a slide without MPP is refused at once
        tissue = _tissue_stage(cache.prep, slide, config.tissue, progress, name)
        grid = make_tile_grid(slide, _tiling_for(config, encoder), Scope.whole(), tissue)
        for k, view in enumerate(views):
            message = f"scanner-swapped view {k}" if view is not None else ""
            features = cache.load_aligned(cache_key(slide, grid, encoder, view, harmonise), grid)
            from_cache = features is not None
            if features is not None:
                n = len(grid)
                cached = "features in the cache" + (f" ({message})" if message else "")
                report(progress, name, EMBEDDING, n, n, message=cached)
            else:
                if not embed:
                    return None
                if harmonise is not None:  # its own stage; cache.embed then finds the plan kept
                    _plan_stage(cache.prep, slide, harmonise, progress, name)
                embedding = cache.embed(
                    slide,
                    grid,
                    encoder,
                    view,
                    tissue.glass_rgb,
                    harmonise=harmonise,
                    batch_size=config.batch_size,
                )
                features = _embedded(embedding, progress, name, message)
            view_id = view.identity() if view is not None else ""
            readable, kept, excluded = split_unreadable(grid, features)
            out.append(
                SlideFeatures(
                    str(path), readable, kept, view_id, info.name, info.weights_id, from_cache, excluded
                )
            )
    return out


def extract_one(
    path: str, config: ExtractConfig, mpp: float | None = None, progress: ProgressCallback | None = None
) -> SlideResult:
    """Embed one slide (and its scanner-swapped ``config.views``) into the cache, read with the pixel
    size ``mpp`` when given; never raises (errors come back in the result). ``progress``: as for
    :func:`slide_features`."""
    start = time.perf_counter()
    views = (None, *config.views)
    try:
        result = slide_features(path, config, views, mpp=mpp, progress=progress)
        assert result is not None
        cached = all(r.from_cache for r in result)
        plain = result[0]
        excluded = plain.excluded
        assert excluded is not None
        encoder = encoder_for(config.encoder, config.weights, config.allow_hub, config.device)
        if config.h5_dir:
            write_feature_h5(
                Path(config.h5_dir) / f"{Path(path).stem}.h5",
                FeatureSet(
                    plain.features,
                    plain.grid.coords_level0,
                    plain.grid.rows,
                    plain.grid.cols,
                    feature_attrs(plain.grid, encoder),
                    excluded_coords=excluded.coords,
                    excluded_rows=excluded.rows,
                    excluded_cols=excluded.cols,
                ),
            )
        return SlideResult(
            str(path),
            "cached" if cached else "extracted",
            len(plain.grid),
            time.perf_counter() - start,
            warning=excluded.describe(),
        )
    except Exception as exc:  # one bad slide must not stop the cohort
        return SlideResult(str(path), "failed", seconds=time.perf_counter() - start, error=user_message(exc))


def slides_from_inputs(inputs: Sequence[str]) -> list[str]:
    """Slide paths from arguments: slide files, CSV files with a ``path`` column (relative paths
    resolved against the CSV), or text files with one path per line."""
    return [path for path, _ in slides_with_mpp(inputs)]


def slides_with_mpp(inputs: Sequence[str], mpp: float | None = None) -> list[tuple[str, float | None]]:
    """:func:`slides_from_inputs` with each slide's pixel size override (µm/px): a CSV's ``mpp``
    column where filled (invalid values are refused), else ``mpp`` (None: the file's)."""
    slides: list[tuple[str, float | None]] = []
    for item in inputs:
        p = Path(item)
        if p.suffix.lower() in (".csv", ".txt") and not p.is_file():
            raise InputError(f"{p}: no such slide list")
        if p.suffix.lower() == ".csv":
            with open(p, newline="") as fh:
                reader = csv.DictReader(fh)
                if "path" not in (reader.fieldnames or []):
                    raise InputError(f"{p}: a slide list CSV needs a 'path' column")
                for lineno, row in enumerate(reader, start=2):
                    q = Path(row["path"])
                    own = parse_mpp(row.get("mpp"), f"{p.name}, line {lineno}")
                    path = q if q.is_absolute() else (p.parent / q).resolve()
                    slides.append((str(path), mpp if own is None else own))
        elif p.suffix.lower() == ".txt":
            slides += [(line.strip(), mpp) for line in p.read_text().splitlines() if line.strip()]
        else:
            slides.append((str(p), mpp))
    return slides


def extract_cohort(
    paths: Sequence[str],
    config: ExtractConfig,
    *,
    scheduler: str | None = None,
    n_workers: int = 2,
    slide_mpp: Mapping[str, float] | None = None,
    progress: ProgressCallback | None = None,
) -> Iterator[SlideResult]:
    """Yield one :class:`SlideResult` per slide as they finish.

    ``scheduler``: address of a running Dask scheduler; otherwise a ``LocalCluster`` with
    ``n_workers`` processes. ``n_workers=0`` runs in this process without Dask. ``slide_mpp``: pixel
    size overrides (µm/px) by slide path, sent with each slide's job; other slides use their files'.
    ``progress`` gets a ``finished`` record when the run starts (0 of n) and per slide (its status as
    the message); each slide's stages only when it runs in this process (``n_workers=0``).
    """
    if not paths:
        return
    mpps = [(slide_mpp or {}).get(path) for path in paths]
    report(progress, "", FINISHED, 0, len(paths))
    for i, result in enumerate(_extract_all(paths, config, mpps, scheduler, n_workers, progress), 1):
        report(progress, Path(result.slide).name, FINISHED, i, len(paths), result.seconds, result.status)
        yield result


def _extract_all(
    paths: Sequence[str],
    config: ExtractConfig,
    mpps: list[float | None],
    scheduler: str | None,
    n_workers: int,
    progress: ProgressCallback | None,
) -> Iterator[SlideResult]:
    if scheduler is None and n_workers == 0:
        for path, mpp in zip(paths, mpps):
            yield extract_one(path, config, mpp, progress)
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        configs = [config] * len(paths)  # each job: its slide, the config and the slide's pixel size
        futures = client.map(extract_one, list(paths), configs, mpps, pure=False)
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
