"""End-to-end workflows over a cohort CSV: train a head, predict slides (the CLI and widgets call these).

Both are generators of progress so a GUI can show and cancel them; :func:`drive` runs one to the
end for scripts.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..features.cohort import ExtractConfig, _encoder, extract_cohort, slide_features
from ..stain import ScannerAugmentation
from .data import CohortError, load_bags, read_cohort_table
from .predict import BagPrediction, TrainedHead
from .train import EpochReport, FeatureSource, TrainConfig, Trainer, TrainResult


@dataclass(frozen=True)
class Stage:
    """A progress message between epochs (``done`` of ``total`` items of the stage)."""

    message: str
    done: int = 0
    total: int = 0


def feature_source(extract: ExtractConfig) -> FeatureSource:
    encoder = _encoder(extract.encoder, extract.weights, extract.allow_hub, extract.device)
    return FeatureSource(
        encoder.info.name, encoder.info.embed_dim, encoder.info.weights_id, asdict(extract.tiling)
    )


def train_cohort(
    cohort_csv: str | os.PathLike[str],
    model_dir: str | os.PathLike[str],
    extract: ExtractConfig,
    config: TrainConfig | None = None,
    n_views: int = 1,
    workers: int = 2,
) -> Generator[Stage | EpochReport, None, TrainResult]:
    """Embed the cohort (cached; scanner-swapped views of train/val slides when the losses need
    them), train, and save the best head to ``model_dir`` whenever it improves."""
    config = config or TrainConfig()
    table = read_cohort_table(cohort_csv)
    train_rows, val_rows = table.split("train"), table.split("val")
    if not train_rows or not val_rows:
        raise CohortError(f"{cohort_csv}: need slides in both the 'train' and 'val' splits")
    views = tuple(ScannerAugmentation(seed=0, view=v) for v in range(n_views))
    if config.losses.needs_views or config.validate_on_views:
        extract = replace(extract, views=views)
    rows = train_rows + val_rows
    yield Stage("embedding slides", 0, len(rows))
    for i, result in enumerate(extract_cohort([r.path for r in rows], extract, n_workers=workers), 1):
        if result.status == "failed":
            raise CohortError(f"cannot embed {result.slide}: {result.error}")
        yield Stage(f"embedded {Path(result.slide).name}", i, len(rows))
    bags_train = load_bags(table, train_rows, extract)
    bags_val = load_bags(table, val_rows, extract)
    trainer = Trainer(
        bags_train, bags_val, table.label_names, table.site_names, feature_source(extract), config, model_dir
    )
    yield Stage("training", 0, config.epochs)
    yield from trainer.epochs()
    return trainer.result()


def extract_config_for(head: TrainedHead, cache_dir: str | None, device: str = "auto") -> ExtractConfig:
    """The feature extraction a head expects (its encoder and tiling)."""
    return ExtractConfig(
        cache_dir=cache_dir or str(_default_cache()),
        encoder=head.config.encoder_name,
        tiling=head.tiling_config(),
        device=device,
    )


def _default_cache() -> Path:
    from ..features.cache import default_cache_dir

    return default_cache_dir()


@dataclass
class SlideOutcome:
    slide: str
    prediction: BagPrediction | None
    error: str = ""


def predict_slides(
    head: TrainedHead, slides: Sequence[str], extract: ExtractConfig, site: str | None = None
) -> Generator[Stage, None, list[SlideOutcome]]:
    """Whole-slide predictions; a slide that fails is reported and the others go on."""
    source = feature_source(extract)
    head.check_features(source.encoder_name, source.embed_dim)
    outcomes: list[SlideOutcome] = []
    for i, path in enumerate(slides, 1):
        try:
            feats = slide_features(path, extract)
            assert feats is not None
            outcomes.append(SlideOutcome(path, head.predict(feats[0].features, site)))
        except Exception as exc:  # reported per slide
            outcomes.append(SlideOutcome(path, None, f"{type(exc).__name__}: {exc}"))
        yield Stage(f"predicted {Path(path).name}", i, len(slides))
    return outcomes


def drive(gen: Generator[Any, None, Any], log: Any = None) -> Any:
    """Run a workflow generator to the end, passing each progress item to ``log``."""
    while True:
        try:
            item = next(gen)
        except StopIteration as stop:
            return stop.value
        if log is not None:
            log(item)
