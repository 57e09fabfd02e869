"""The shortcut benchmark: does a head learn the scanner instead of the tissue, and do the
robustness losses stop it?

Data: the synthetic multi-scanner cohort (:mod:`napari_wsirobust.synthetic.cohort`), embedded with
one encoder. Train/val/test_id are *confounded* (most tumour slides come from scanner A);
test_ood has scanner and label independent, and every test_ood patient is scanned on every
scanner. Re-scans, where the cohort has them (re-scanned training patients, or an unlabelled
``reference`` split), feed the paired-scan consistency loss. For each loss configuration and seed
we train on train (early stopping on val) and report

- ``auc_id``: AUC on test_id (the confounded, in-distribution test),
- ``auc_shifted``: AUC on test_ood (all scanners, both labels on each),
- ``drop``: auc_id - auc_shifted,
- ``site_predictability``: cross-validated balanced accuracy of a linear probe predicting the
  scanner from the head's slide representation on test_ood (chance = 1 / scanners),
- ``probe_chance``: the 95th percentile of that probe with the scanners shuffled among the test_ood
  slides (100 shufflings): a probe at or below it is indistinguishable from chance,
- ``site_variance``: share of that representation's variance between the scanner means on test_ood
  (eta^2; no scanner effect gives about (scanners - 1) / (slides - 1)),
- ``localisation``: mean per-slide AUC of attention vs ground-truth tumour tiles (test_ood tumours),
- ``flip_rate``: fraction of test_ood patients whose predicted label differs between scanners.

Results: mean and standard deviation over seeds per configuration, as JSON and a Markdown table.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..cohort import REFERENCE, CohortError, CohortTable, read_cohort_table
from ..features import ExtractConfig, extract_cohort
from ..mil import (
    LOSS_PRESETS,
    Bag,
    FeatureSource,
    TrainConfig,
    TrainedHead,
    Trainer,
    auc_ovr,
    evaluate,
    load_bags,
    site_predictability,
    site_probe_chance,
    site_variance_share,
    train_to_completion,
)
from ..progress import ProgressCallback
from ..stain import ScannerAugmentation, StainProfile, reference_for_slides
from ..synthetic import CohortConfig, generate_cohort

METRICS = (
    "auc_id",
    "auc_shifted",
    "drop",
    "site_predictability",
    "probe_chance",
    "site_variance",
    "localisation",
    "flip_rate",
)


@dataclass(frozen=True)
class ShortcutConfig:
    work_dir: str
    cohort: CohortConfig = field(default_factory=CohortConfig)
    encoder: str = "effnet-lite0-imagenet"
    presets: tuple[str, ...] = ()  # empty: every preset the cohort supports (usable_presets)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train: TrainConfig = field(default_factory=TrainConfig)
    views: int = 1  # scanner-swapped views per training/validation slide
    view_seed: int = 0
    workers: int = 2
    cache_dir: str | None = None  # default: <work_dir>/features
    harmonise: str | None = None  # "auto" or a site: every slide re-rendered into that reference first

    def augmentations(self) -> tuple[ScannerAugmentation, ...]:
        return tuple(ScannerAugmentation(seed=self.view_seed, view=v) for v in range(self.views))


@dataclass
class ShortcutData:
    table: CohortTable
    bags: dict[str, list[Bag]]
    source: FeatureSource


def usable_presets(cohort: CohortConfig, harmonised: bool = False) -> tuple[str, ...]:
    """Every loss preset this cohort can train: the paired-scan ones only with re-scans (of training
    or of reference patients); with harmonised tiles, none that needs scanner-swapped views."""
    rescans = cohort.rescanned_train_patients > 0 or cohort.reference_patients > 0
    return tuple(
        name
        for name, losses in LOSS_PRESETS.items()
        if (losses.paired_scan == 0 or rescans) and not (harmonised and losses.needs_views)
    )


def prepare(
    config: ShortcutConfig, log: Any = print, progress: ProgressCallback | None = None
) -> ShortcutData:
    """Generate the cohort and embed it (both resumable and cached), then load the bags. ``progress``
    gets the per-slide records of both (:func:`~napari_wsirobust.synthetic.generate_cohort`, then
    :func:`~napari_wsirobust.features.extract_cohort` once per batch of slides)."""
    work = Path(config.work_dir)
    start = time.perf_counter()
    csv_path = generate_cohort(
        work / "cohort", replace(config.cohort, workers=config.workers), progress=progress
    )
    log(f"cohort ready: {csv_path} ({time.perf_counter() - start:.0f} s)")
    table = read_cohort_table(csv_path)
    cache = config.cache_dir or str(work / "features")
    plain = ExtractConfig(cache_dir=cache, encoder=config.encoder)
    with_views = replace(plain, views=config.augmentations())
    if config.harmonise is not None:  # no scanner-swapped views of harmonised tiles
        by_site: dict[str, list[str]] = {}
        for row in table.split("train"):
            by_site.setdefault(row.site, []).append(row.path)
        plain = with_views = replace(plain, harmonise=reference_for_slides(by_site, config.harmonise))
        log(f"harmonising every slide to site {plain.harmonise.site}'s profile")
    trainable = table.split("train", "val")
    tests = [r for r in table.rows if r.split not in ("train", "val")]  # and the reference re-scans
    for rows, cfg in ((trainable, with_views), (tests, plain)):
        failed = [
            r
            for r in extract_cohort([r.path for r in rows], cfg, n_workers=config.workers, progress=progress)
            if r.status == "failed"
        ]
        if failed:
            raise CohortError(f"feature extraction failed: {failed[0].slide}: {failed[0].error}")
    log(f"features ready ({time.perf_counter() - start:.0f} s)")
    bags = {
        "train": load_bags(table, table.split("train"), with_views),
        "val": load_bags(table, table.split("val"), with_views),
        "test_id": load_bags(table, table.split("test_id"), plain),
        "test_ood": load_bags(table, table.split("test_ood"), plain),
        REFERENCE: load_bags(table, table.split(REFERENCE), plain),  # for the paired-scan loss only
    }
    from ..mil import feature_source

    source = feature_source(plain)
    return ShortcutData(table, bags, source)


def flip_rate(bags: list[Bag], predicted: Sequence[int]) -> float:
    """Fraction of patients (with slides on several scanners) whose predicted label differs."""
    by_patient: dict[str, set[int]] = {}
    for bag, p in zip(bags, predicted):
        by_patient.setdefault(bag.row.patient, set()).add(int(p))
    multi = [v for k, v in by_patient.items() if sum(b.row.patient == k for b in bags) > 1]
    return float(np.mean([len(v) > 1 for v in multi])) if multi else float("nan")


def train_preset(
    data: ShortcutData,
    preset: str,
    seed: int,
    train: TrainConfig,
    site_profiles: Mapping[str, StainProfile] | None = None,
) -> Trainer:
    """A trainer for one named loss configuration and seed, on the benchmark's train/val bags
    (``site_profiles``: the training sites' colour profiles to save with the head)."""
    config = replace(train, seed=seed, losses=LOSS_PRESETS[preset])
    if data.source.harmonise:
        config = replace(config, validate_on_views=False)  # harmonised slides have no views
    return Trainer(
        data.bags["train"],
        data.bags["val"],
        data.table.label_names,
        data.table.site_names,
        data.source,
        config,
        reference=data.bags[REFERENCE],
        site_profiles=site_profiles,
    )


def run_one(data: ShortcutData, preset: str, seed: int, train: TrainConfig) -> dict[str, Any]:
    """Train one configuration with one seed and measure it."""
    start = time.perf_counter()
    result = train_to_completion(train_preset(data, preset, seed, train))
    train_seconds = time.perf_counter() - start  # training only, not the evaluation below
    head = TrainedHead(result.model, result.config, result.standardiser)
    id_metrics, _ = evaluate(head, data.bags["test_id"], n_bootstrap=0)
    ood = data.bags["test_ood"]
    ood_metrics, predictions = evaluate(head, ood, n_bootstrap=0)
    reps = np.stack([p.representation for p in predictions])
    y = np.array([b.label for b in ood])
    probs = np.stack([p.probabilities for p in predictions])
    return {
        "preset": preset,
        "seed": seed,
        "auc_id": id_metrics["auc"],
        "auc_shifted": auc_ovr(y, probs),
        "drop": id_metrics["auc"] - ood_metrics["auc"],
        "site_predictability": site_predictability(reps, [b.row.site for b in ood], seed=seed),
        "probe_chance": site_probe_chance(reps, [b.row.site for b in ood], seed=seed),
        "site_variance": site_variance_share(reps, [b.row.site for b in ood]),
        "localisation": ood_metrics["localisation_auc"],
        "flip_rate": flip_rate(ood, probs.argmax(1)),
        "per_site_auc_shifted": ood_metrics["per_site_auc"],
        "ece_shifted": ood_metrics["ece"],
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": train_seconds,
    }


def run_benchmark(data: ShortcutData, config: ShortcutConfig) -> Generator[dict[str, Any], None, None]:
    """Yield one result per (preset, seed) as they finish."""
    for preset in config.presets or usable_presets(config.cohort, config.harmonise is not None):
        for seed in config.seeds:
            yield run_one(data, preset, seed, config.train)


def summarise(runs: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """preset -> metric -> {"mean", "std", "n"} (NaNs ignored)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for preset in dict.fromkeys(r["preset"] for r in runs):
        rows = [r for r in runs if r["preset"] == preset]
        out[preset] = {}
        for m in METRICS:
            values = np.array([r[m] for r in rows], dtype=np.float64)
            values = values[~np.isnan(values)]
            out[preset][m] = {
                "mean": float(values.mean()) if len(values) else float("nan"),
                "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                "n": int(len(values)),
            }
    return out


def best_robust_preset(summary: dict[str, dict[str, dict[str, float]]]) -> str:
    """The non-plain configuration with the highest mean shifted AUC (ties: smaller drop, then lower
    site predictability)."""
    candidates = [p for p in summary if p != "plain"] or list(summary)
    return max(
        candidates,
        key=lambda p: (
            summary[p]["auc_shifted"]["mean"],
            -summary[p]["drop"]["mean"],
            -summary[p]["site_predictability"]["mean"],
        ),
    )


def markdown_table(summary: dict[str, dict[str, dict[str, float]]], n_sites: int) -> str:
    head = (
        "| configuration | AUC in-dist | AUC shifted | drop | site predictability "
        f"(chance {1 / n_sites:.2f}) | probe by chance (95th pct) | site share of variance | "
        "localisation AUC | prediction flips across scanners |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for preset, metrics in summary.items():
        cells = [f"{metrics[m]['mean']:.3f} ± {metrics[m]['std']:.3f}" for m in METRICS]
        lines.append(f"| {preset} ({LOSS_PRESETS[preset].describe()}) | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def write_results(out_dir: str | Path, config: ShortcutConfig, runs: list[dict[str, Any]]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    payload = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "metrics": list(METRICS),
        "summary": summary,
        "best_robust": best_robust_preset(summary),
        "runs": runs,
    }
    return atomic_write_text(out / "shortcut_benchmark.json", json.dumps(payload, indent=2, default=float))
