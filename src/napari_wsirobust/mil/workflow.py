"""End-to-end workflows over a cohort CSV: train a head, predict slides (the CLI and widgets call these).

Both are generators of progress so a GUI can show and cancel them; :func:`drive` runs one to the
end for scripts. Each also takes an optional ``progress`` callback for the per-slide records of
:mod:`napari_wsirobust.progress` (a slide's stages, and the run's count of finished slides).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..cohort import (
    NO_RESCANS,
    REFERENCE,
    TRAIN,
    VAL,
    CohortError,
    CohortRow,
    CohortTable,
    SlideAnnotations,
    read_cohort_table,
    rescanned_patients,
)
from ..errors import user_message
from ..features import (
    DEFAULT_MAX_UNREADABLE_SHARE,
    ExtractConfig,
    FeatureCache,
    SlidePrepStore,
    check_unreadable_share,
    encoder_for,
    extract_cohort,
    slide_features,
)
from ..io import WSI, open_slide
from ..progress import FINISHED, HEAD, ProgressCallback, SlideProgress, report
from ..stain import (
    HarmonisationError,
    ScannerAugmentation,
    ScannerCheck,
    choose_reference,
    training_site_profiles,
)
from .bags import Bag, load_bags
from .metrics import auc_ovr, balanced_accuracy
from .predict import BagPrediction, TrainedHead
from .train import EpochReport, FeatureSource, LossConfig, TrainConfig, Trainer, TrainingError, TrainResult


@dataclass(frozen=True)
class Stage:
    """A progress message between epochs (``done`` of ``total`` items of the stage)."""

    message: str
    done: int = 0
    total: int = 0


def feature_source(extract: ExtractConfig) -> FeatureSource:
    encoder = encoder_for(extract.encoder, extract.weights, extract.allow_hub, extract.device)
    return FeatureSource(
        encoder.info.name,
        encoder.info.embed_dim,
        encoder.info.weights_id,
        asdict(extract.tiling),
        extract.harmonise.to_dict() if extract.harmonise is not None else {},
        extract.color,
    )


def train_cohort(
    cohort_csv: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    extract: ExtractConfig,
    config: TrainConfig | None = None,
    n_views: int = 1,
    workers: int = 2,
    harmonise_to: str | None = None,
    mpp: float | None = None,
    progress: ProgressCallback | None = None,
) -> Generator[Stage | EpochReport, None, TrainResult]:
    """Embed the cohort (cached; scanner-swapped views of train/val slides when the losses need
    them, harmonised tiles with ``harmonise_to``), train, and save the best head to ``model_dir``
    whenever it improves. ``mpp``: the pixel size (µm/px) of the slides whose ``mpp`` cell is blank.
    ``progress``: the embedding's per-slide records (see :func:`train_table`)."""
    table = read_cohort_table(cohort_csv, default_mpp=mpp)
    run = yield from train_table(
        table, model_dir, extract, config, n_views, workers, harmonise_to=harmonise_to, progress=progress
    )
    assert run.result is not None
    return run.result


@dataclass
class TrainingRun:
    """What :func:`train_table` leaves: the best head so far (None if stopped before the first
    epoch ended), the bags of every split (for evaluation) and the number of annotated tiles."""

    result: TrainResult | None
    table: CohortTable
    bags: dict[str, list[Bag]]
    annotated_tiles: int = 0
    stopped: bool = False


def check_losses_fit_cohort(losses: LossConfig, paired_rows: list[CohortRow]) -> None:
    """Refuse, before anything is embedded, a loss configuration the cohort cannot feed (paired-scan
    consistency without re-scanned patients among ``paired_rows``: the train and reference splits)."""
    if losses.paired_scan > 0 and not rescanned_patients(paired_rows):
        raise CohortError(NO_RESCANS)


def check_harmonisation(losses: LossConfig, harmonise_to: str | None, train_sites: Sequence[str]) -> None:
    """Refuse, before anything is embedded, harmonising to a site the training slides do not have, or
    with losses that need scanner-swapped views (none are made of harmonised tiles)."""
    if harmonise_to is not None and harmonise_to != "auto" and harmonise_to not in train_sites:
        raise HarmonisationError(
            f"no site {harmonise_to!r} among the training slides to harmonise to "
            f"(sites: {', '.join(train_sites)}); use auto or one of them"
        )
    if losses.needs_views:
        raise TrainingError(
            f"the loss configuration ({losses.describe()}) needs scanner-swapped views, which are not "
            "made for harmonised slides; choose one without consistency, view_ce or view_align (e.g. "
            "robust-site) or train without harmonisation"
        )


def train_table(
    table: CohortTable,
    model_dir: str | os.PathLike[str],
    extract: ExtractConfig,
    config: TrainConfig | None = None,
    n_views: int = 1,
    workers: int = 2,
    annotations: Mapping[str, SlideAnnotations] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    other_splits: bool = False,
    harmonise_to: str | None = None,
    progress: ProgressCallback | None = None,
) -> Generator[Stage | EpochReport, None, TrainingRun]:
    """Train on a validated cohort table; slides with ``annotations`` (by path) get labelled tiles.
    ``other_splits``: also embed the slides of the other splits (e.g. test) for evaluation.
    ``harmonise_to``: re-render every slide's tiles into a reference profile before embedding - "auto"
    (the least sharp training site, :func:`~napari_wsirobust.stain.harmonise.choose_reference`) or a
    site name; the reference is saved with the head and applied again at prediction. Every slide is
    read with its row's ``mpp`` when set.

    ``should_stop`` is polled between slides and epochs: training then ends early and the run keeps
    the best head so far (already saved to ``model_dir``). ``progress`` gets the embedding's
    per-slide records (:func:`~napari_wsirobust.features.extract_cohort`'s; its ``finished`` counts
    run over every slide embedded)."""
    config = config or TrainConfig()
    annotations = annotations or {}
    train_rows, val_rows = table.split(TRAIN), table.split(VAL)
    if not train_rows or not val_rows:
        raise CohortError("need slides in both the 'train' and the 'val' split")
    check_losses_fit_cohort(config.losses, table.split(TRAIN, REFERENCE))
    slide_mpp = {r.path: r.mpp for r in table.rows if r.mpp is not None}
    if harmonise_to is not None or extract.harmonise is not None:
        check_harmonisation(config.losses, harmonise_to, sorted({r.site for r in train_rows}))
        config = replace(config, validate_on_views=False)
    by_site: dict[str, list[str]] = {}
    for row in train_rows:
        by_site.setdefault(row.site, []).append(row.path)
    yield Stage(f"estimating the colour profiles of {len(by_site)} training site(s)", 0, len(by_site))
    try:  # saved with the head: to warn about slides from scanners unlike every training site
        site_profiles = training_site_profiles(by_site, slide_mpp=slide_mpp)
    except HarmonisationError as exc:
        if harmonise_to is not None:
            raise
        site_profiles = {}
        yield Stage(f"training sites not profiled ({exc}): no warning about unlike scanners", 0, 0)
    if harmonise_to is not None:
        site = None if harmonise_to == "auto" else harmonise_to
        extract = replace(extract, harmonise=choose_reference(site_profiles, site))
        yield Stage(f"harmonising every slide to site {extract.harmonise.site}'s profile", 1, 1)
    views = tuple(ScannerAugmentation(seed=0, view=v) for v in range(n_views))
    if extract.harmonise is None and (config.losses.needs_views or config.validate_on_views):
        extract = replace(extract, views=views)
    reference_rows = table.split(REFERENCE) if config.losses.paired_scan > 0 else []  # else not needed
    others = [r for r in table.rows if r.split not in (TRAIN, VAL, REFERENCE)] if other_splits else []
    rows = train_rows + val_rows + reference_rows + others
    plain = replace(extract, views=())  # reference and test slides need no scanner-swapped views
    batches = [(train_rows + val_rows, extract), (reference_rows + others, plain)]
    yield Stage("embedding slides", 0, len(rows))
    done = 0
    for batch, batch_config in (b for b in batches if b[0]):
        paths = [r.path for r in batch]
        counted = _counted_from(progress, done, len(rows))
        for result in extract_cohort(
            paths, batch_config, n_workers=workers, slide_mpp=slide_mpp, progress=counted
        ):
            if result.status == "failed":
                raise CohortError(f"cannot embed {result.slide}: {result.error}")
            done += 1
            yield Stage(f"embedded {Path(result.slide).name}", done, len(rows))
            if should_stop():
                return TrainingRun(None, table, {}, stopped=True)
    bags = {
        split: load_bags(table, [r for r in batch if r.split == split], batch_config)
        for batch, batch_config in batches
        for split in dict.fromkeys(r.split for r in batch)
    }
    n_annotated = 0
    for bag in (b for split_bags in bags.values() for b in split_bags):
        if bag.row.path in annotations:
            bag.tile_labels = annotations[bag.row.path].tile_labels(bag.grid, table.label_names)
            n_annotated += int((bag.tile_labels >= 0).sum())
    trainer = Trainer(
        bags[TRAIN],
        bags[VAL],
        table.label_names,
        table.site_names,
        feature_source(extract),
        config,
        model_dir,
        reference=bags.get(REFERENCE, []),
        site_profiles=site_profiles,
    )
    yield Stage("training", 0, config.epochs)
    stopped = False
    for epoch in trainer.epochs():
        yield epoch
        if should_stop():
            stopped = True
            break
    result = trainer.result() if trainer.history else None
    if result is not None and stopped:
        result.cancelled = True
    return TrainingRun(result, table, bags, n_annotated, stopped)


def _counted_from(progress: ProgressCallback | None, offset: int, total: int) -> ProgressCallback | None:
    """``progress`` with the ``finished`` counts of one batch of slides turned into the whole run's:
    ``offset`` slides before it, ``total`` in all."""
    if progress is None:
        return None

    def counted(p: SlideProgress) -> None:
        progress(replace(p, done=offset + p.done, total=total) if p.stage == FINISHED else p)

    return counted


@dataclass(frozen=True)
class MetricRow:
    """One line of the metrics table: a split, overall or one site."""

    split: str
    site: str  # "all" for the whole split
    n_slides: int
    auc: float
    balanced_accuracy: float


def metrics_table(head: TrainedHead, bags: Mapping[str, list[Bag]]) -> list[MetricRow]:
    """AUC and balanced accuracy of ``head`` per split (train and unlabelled reference excluded),
    overall and per site."""
    rows: list[MetricRow] = []
    for split, split_bags in bags.items():
        if split in (TRAIN, REFERENCE) or not split_bags:
            continue
        preds = head.predict_bags(split_bags)
        y = np.array([b.label for b in split_bags])
        probs = np.stack([p.probabilities for p in preds])
        sites = np.array([str(b.row.site) for b in split_bags])
        for site in ["all", *sorted({str(s) for s in sites})]:
            keep = np.ones(len(y), bool) if site == "all" else sites == site
            rows.append(
                MetricRow(
                    split,
                    site,
                    int(keep.sum()),
                    auc_ovr(y[keep], probs[keep]),
                    balanced_accuracy(y[keep], probs[keep].argmax(1)),
                )
            )
    return rows


def extract_config_for(head: TrainedHead, cache_dir: str | None, device: str = "auto") -> ExtractConfig:
    """The feature extraction a head expects (its encoder, tiling and harmonisation)."""
    return ExtractConfig(
        cache_dir=cache_dir or str(_default_cache()),
        encoder=head.config.encoder_name,
        tiling=head.tiling_config(),
        device=device,
        harmonise=head.harmonisation(),
        color=head.config.color,
    )


def _default_cache() -> Path:
    from ..features import default_cache_dir

    return default_cache_dir()


@dataclass
class SlideOutcome:
    slide: str
    prediction: BagPrediction | None
    error: str = ""
    warning: str = ""  # e.g. tiles left out because they overlap damaged file tiles
    scanner: ScannerCheck | None = None  # the slide's profile against the training sites'


def slide_scanner_check(head: TrainedHead, prep: SlidePrepStore, slide: WSI) -> ScannerCheck | None:
    """How unlike every training site of ``head`` the slide's scanner is; None when the head saved no
    site profiles or the slide's profile cannot be estimated (too little stained tissue). The profile
    comes from ``prep``: the harmonisation plan's when the head harmonises, else the slide's own entry."""
    if not head.site_profiles():
        return None
    harmonise = head.harmonisation()
    try:
        profile = prep.plan(slide, harmonise).source if harmonise is not None else prep.profile(slide)
    except ValueError:
        return None
    return head.check_scanner(profile)


def predict_slides(
    head: TrainedHead,
    slides: Sequence[str],
    extract: ExtractConfig,
    site: str | None = None,
    slide_mpp: Mapping[str, float] | None = None,
    max_unreadable_share: float = DEFAULT_MAX_UNREADABLE_SHARE,
    progress: ProgressCallback | None = None,
) -> Generator[Stage, None, list[SlideOutcome]]:
    """Whole-slide predictions; a slide that fails is reported and the others go on. ``slide_mpp``:
    pixel size overrides (µm/px) by slide path; other slides use their files'. A slide with more
    than ``max_unreadable_share`` of its tissue tiles over damaged file tiles is refused.
    ``progress`` gets each slide's stages (tissue, plan, embedding, head) and the run's ``finished``
    count (the outcome, "predicted" or "failed", as the message)."""
    slide_mpp = slide_mpp or {}
    source = feature_source(extract)
    head.check_features(source.encoder_name, source.embed_dim)
    outcomes: list[SlideOutcome] = []
    report(progress, "", FINISHED, 0, len(slides))
    for i, path in enumerate(slides, 1):
        outcomes.append(
            _predict_one(head, path, extract, site, slide_mpp.get(path), max_unreadable_share, progress)
        )
        status = "predicted" if outcomes[-1].prediction is not None else "failed"
        report(progress, Path(path).name, FINISHED, i, len(slides), message=status)
        yield Stage(f"predicted {Path(path).name}", i, len(slides))
    return outcomes


def _predict_one(
    head: TrainedHead,
    path: str,
    extract: ExtractConfig,
    site: str | None,
    mpp: float | None,
    max_unreadable_share: float,
    progress: ProgressCallback | None,
) -> SlideOutcome:
    """One slide's outcome; an error is reported in it, not raised."""
    try:
        feats = slide_features(path, extract, mpp=mpp, progress=progress)
        assert feats is not None and feats[0].excluded is not None
        excluded = feats[0].excluded
        check_unreadable_share(excluded, Path(path).name, max_unreadable_share)
        n = len(feats[0].features)
        report(progress, Path(path).name, HEAD, n, n, message="running the MIL head")
        prediction = head.predict(feats[0].features, site)
        with open_slide(path, mpp=mpp, color=extract.color) as slide:
            scanner = slide_scanner_check(head, FeatureCache(extract.cache_dir).prep, slide)
        return SlideOutcome(path, prediction, warning=excluded.describe(), scanner=scanner)
    except Exception as exc:  # reported per slide
        return SlideOutcome(path, None, user_message(exc))


def drive(gen: Generator[Any, None, Any], log: Any = None) -> Any:
    """Run a workflow generator to the end, passing each progress item to ``log``."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if log is not None:
            log(item)
