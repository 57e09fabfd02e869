"""Leave-one-scanner-out benchmark: how a head trained on some scanners does on a scanner it never saw.

Folds, each a synthetic cohort of its own (:mod:`napari_wsirobust.synthetic.cohort`), confounded as in
the shortcut benchmark (most tumour slides from one training scanner):

- ``all``: trained on every training profile (A, B, C: the default configuration); tested on the
  test_ood tissues rendered by the unseen profiles (:data:`~napari_wsirobust.synthetic.UNSEEN_PROFILES`,
  outside every training range);
- ``without-X`` for each training profile X: trained on the others; tested on the test_ood tissues
  rendered by X.

Every test_ood patient is rendered by each training scanner of its fold and by each unseen one, so a
patient's call on an unseen scanner can be compared with its call on the scanners the head was trained
on. Per fold, configuration, seed and test scanner: AUC, accuracy at the model's threshold, how many
patients' calls differ from their call on the training scanners (the majority over those renderings,
ties to the mean probability), ECE (10 bins) and the mean p(tumour) of each class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Generator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_text
from ..features import FeatureCache
from ..io import open_slide
from ..mil import (
    LOSS_PRESETS,
    Bag,
    BagPrediction,
    TrainConfig,
    TrainedHead,
    auc_ovr,
    expected_calibration_error,
    train_to_completion,
)
from ..stain import (
    UNLIKE_THRESHOLD,
    Harmonisation,
    check_scanner,
    scaled_differences,
    training_site_profiles,
)
from ..synthetic import UNSEEN_PROFILES, CohortConfig
from .shortcut import ShortcutConfig, ShortcutData, prepare, train_preset, usable_presets

UNCALIBRATED = " (uncalibrated)"  # suffix of a preset's results without the head's calibration
ON_TRAIN_AND_VAL = " (calibrated on train+val)"  # calibration fitted on the training slides too
SCANNER_METRICS = ("auc", "accuracy", "calls_changed", "ece", "p_tumour_tumour", "p_tumour_normal")


@dataclass(frozen=True)
class Fold:
    """One cohort of the benchmark: its training scanners and the scanners it is tested on unseen."""

    name: str
    cohort: CohortConfig
    unseen: tuple[str, ...]

    @property
    def seen(self) -> tuple[str, ...]:
        return self.cohort.scanners


@dataclass(frozen=True)
class UnseenScannerConfig:
    work_dir: str
    cohort: CohortConfig = field(default_factory=CohortConfig)
    unseen: tuple[str, ...] = tuple(UNSEEN_PROFILES)
    folds: tuple[str, ...] = ()  # empty: every fold ("all", "without-A", ...)
    presets: tuple[str, ...] = ()  # empty: every preset the folds' cohorts support
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train: TrainConfig = field(default_factory=TrainConfig)
    encoder: str = "effnet-lite0-imagenet"
    harmonise: str | None = "auto"
    workers: int = 2
    cache_dir: str | None = None  # default: <work_dir>/features
    calibration_variants: bool = False  # also score a calibration fitted on train + val


def make_folds(config: UnseenScannerConfig) -> list[Fold]:
    """The ``all`` fold, then one fold per training profile held out (the same number of test_ood
    patients in each: ``ood_patients_per_cell`` scaled to the fold's fewer scanners)."""
    base = config.cohort
    folds = [Fold("all", replace(base, test_scanners=config.unseen), config.unseen)]
    n_ood = base.ood_patients_per_cell * len(base.scanners)
    for held in base.scanners:
        others = tuple(s for s in base.scanners if s != held)
        confounded = base.confounded_scanner if base.confounded_scanner in others else others[0]
        cohort = replace(
            base,
            scanners=others,
            confounded_scanner=confounded,
            ood_patients_per_cell=math.ceil(n_ood / len(others)),
            test_scanners=(held,),
        )
        folds.append(Fold(f"without-{held}", cohort, (held,)))
    chosen = [f for f in folds if not config.folds or f.name in config.folds]
    unknown = set(config.folds) - {f.name for f in folds}
    if unknown:
        raise ValueError(f"unknown fold(s) {sorted(unknown)}; folds: {', '.join(f.name for f in folds)}")
    return chosen


def prepare_fold(config: UnseenScannerConfig, fold: Fold, log: Any = print) -> ShortcutData:
    """Generate and embed one fold's cohort (resumable and cached)."""
    work = Path(config.work_dir)
    shortcut = ShortcutConfig(
        work_dir=str(work / fold.name),
        cohort=fold.cohort,
        encoder=config.encoder,
        train=config.train,
        workers=config.workers,
        cache_dir=config.cache_dir or str(work / "features"),
        harmonise=config.harmonise,
    )
    return prepare(shortcut, log=log)


def reference_calls(bags: Sequence[Bag], predictions: Sequence[BagPrediction], seen: Sequence[str]) -> dict:
    """Patient -> the call on the training scanners: the majority over those renderings, a tie going to
    the label of the highest mean probability."""
    by_patient: dict[str, list[BagPrediction]] = {}
    for bag, pred in zip(bags, predictions):
        if bag.row.site in seen:
            by_patient.setdefault(bag.row.patient, []).append(pred)
    calls = {}
    for patient, preds in by_patient.items():
        votes = np.bincount([p.label_index for p in preds], minlength=len(preds[0].probabilities))
        best = np.flatnonzero(votes == votes.max())
        mean = np.mean([p.probabilities for p in preds], axis=0)
        calls[patient] = int(best[np.argmax(mean[best])])
    return calls


def scanner_metrics(
    bags: Sequence[Bag], predictions: Sequence[BagPrediction], scanner: str, calls: dict, positive: int
) -> dict[str, float]:
    """The benchmark's figures on the renderings by ``scanner`` (``positive``: the tumour label)."""
    chosen = [(b, p) for b, p in zip(bags, predictions) if b.row.site == scanner]
    y = np.array([b.label for b, _ in chosen])
    probs = np.stack([p.probabilities for _, p in chosen])
    predicted = np.array([p.label_index for _, p in chosen])
    changed = [
        predicted[i] != calls[b.row.patient] for i, (b, _) in enumerate(chosen) if b.row.patient in calls
    ]
    return {
        "n_slides": len(chosen),
        "auc": auc_ovr(y, probs),
        "accuracy": float(np.mean(predicted == y)),
        "calls_changed": float(np.sum(changed)),
        "ece": expected_calibration_error(y, probs),
        "p_tumour_tumour": float(probs[y == positive, positive].mean())
        if (y == positive).any()
        else math.nan,
        "p_tumour_normal": float(probs[y != positive, positive].mean())
        if (y != positive).any()
        else math.nan,
    }


def evaluate_fold(head: TrainedHead, data: ShortcutData, fold: Fold) -> dict[str, dict[str, float]]:
    """Scanner -> figures on the fold's test_ood renderings, training scanners and unseen ones."""
    bags = data.bags["test_ood"]
    predictions = head.predict_bags(bags)
    positive = head.label_names.index("tumour") if "tumour" in head.label_names else 1
    calls = reference_calls(bags, predictions, fold.seen)
    return {s: scanner_metrics(bags, predictions, s, calls, positive) for s in (*fold.seen, *fold.unseen)}


def scanner_checks(data: ShortcutData, fold: Fold, cache_dir: str) -> list[dict[str, Any]]:
    """Every test slide's scanner check against the fold's training sites (profiled from its training
    slides as training does): slide, scanner, whether it is unseen, distance, nearest site, the
    property that differs most, and every scaled difference (for calibrating the tolerances)."""
    by_site: dict[str, list[str]] = {}
    for row in data.table.split("train"):
        by_site.setdefault(row.site, []).append(row.path)
    sites = training_site_profiles(by_site)
    harmonise = Harmonisation.from_dict(data.source.harmonise) if data.source.harmonise else None
    prep = FeatureCache(cache_dir).prep
    out = []
    for row in (r for r in data.table.rows if r.split.startswith("test")):
        with open_slide(row.path) as slide:
            profile = prep.plan(slide, harmonise).source if harmonise is not None else prep.profile(slide)
        check = check_scanner(profile, sites)
        out.append(
            {
                "slide": Path(row.path).name,
                "split": row.split,
                "scanner": row.site,
                "unseen": row.site in fold.unseen,
                "distance": check.distance,
                "nearest_site": check.nearest_site,
                "differs_most_in": check.differs_most_in,
                "differences": scaled_differences(profile, sites[check.nearest_site]),
            }
        )
    return out


def warning_rates(checks: Sequence[dict[str, Any]], threshold: float = UNLIKE_THRESHOLD) -> dict[str, float]:
    """Scanner -> share of its test slides beyond ``threshold``; and over all seen and all unseen."""
    rates = {}
    for scanner in dict.fromkeys(c["scanner"] for c in checks):
        rates[scanner] = float(
            np.mean([c["distance"] > threshold for c in checks if c["scanner"] == scanner])
        )
    for name, unseen in (("seen", False), ("unseen", True)):
        chosen = [c["distance"] > threshold for c in checks if c["unseen"] == unseen]
        rates[name] = float(np.mean(chosen)) if chosen else math.nan
    return rates


def fold_presets(config: UnseenScannerConfig, fold: Fold) -> tuple[str, ...]:
    return config.presets or usable_presets(fold.cohort, config.harmonise is not None)


def run_fold(
    config: UnseenScannerConfig, fold: Fold, data: ShortcutData
) -> Generator[dict[str, Any], None, None]:
    """One result per (preset, seed) of ``fold``, as each finishes."""
    for preset in fold_presets(config, fold):
        for seed in config.seeds:
            trainer = train_preset(data, preset, seed, config.train)
            result = train_to_completion(trainer)
            head = TrainedHead(result.model, result.config, result.standardiser)
            heads = {preset: head}  # calibrated (the default) and, from the same training, the others
            if head.calibration() is not None:
                heads[preset + UNCALIBRATED] = head.uncalibrated()
            if config.calibration_variants:
                on_both = trainer.calibration_on(data.bags["train"] + data.bags["val"])
                heads[preset + ON_TRAIN_AND_VAL] = TrainedHead(
                    result.model, replace(result.config, calibration=on_both), result.standardiser
                )
            for name, chosen in heads.items():
                yield {
                    "fold": fold.name,
                    "preset": name,
                    "seed": seed,
                    "seen": list(fold.seen),
                    "unseen": list(fold.unseen),
                    "calibration": chosen.config.calibration,
                    "scanners": evaluate_fold(chosen, data, fold),
                }


def summarise(runs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (fold, preset, scanner): mean and SD over seeds of every scanner metric."""
    rows = []
    keys = dict.fromkeys((r["fold"], r["preset"]) for r in runs)
    for fold, preset in keys:
        chosen = [r for r in runs if r["fold"] == fold and r["preset"] == preset]
        for scanner in chosen[0]["scanners"]:
            row: dict[str, Any] = {
                "fold": fold,
                "preset": preset,
                "scanner": scanner,
                "unseen": scanner in chosen[0]["unseen"],
                "n_seeds": len(chosen),
                "n_slides": chosen[0]["scanners"][scanner]["n_slides"],
            }
            for metric in SCANNER_METRICS:
                values = np.array([r["scanners"][scanner][metric] for r in chosen], dtype=np.float64)
                values = values[~np.isnan(values)]
                row[metric] = float(values.mean()) if len(values) else math.nan
                row[metric + "_sd"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
            rows.append(row)
    return rows


def unseen_summary(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Preset -> every unseen-scanner metric averaged over the unseen scanners of all folds (the
    figures the targets are stated in), with the worst scanner's calls changed and ECE."""
    out: dict[str, dict[str, float]] = {}
    for preset in dict.fromkeys(r["preset"] for r in rows):
        unseen = [r for r in rows if r["preset"] == preset and r["unseen"]]
        out[preset] = {m: float(np.nanmean([r[m] for r in unseen])) for m in SCANNER_METRICS}
        out[preset]["worst_auc"] = float(np.nanmin([r["auc"] for r in unseen]))
        out[preset]["worst_calls_changed"] = float(np.nanmax([r["calls_changed"] for r in unseen]))
        out[preset]["worst_ece"] = float(np.nanmax([r["ece"] for r in unseen]))
    return out


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The per-scanner table (unseen scanners first within each fold and configuration)."""
    head = (
        "| fold | configuration | test scanner | AUC | accuracy | calls changed | ECE | "
        "mean p(tumour), tumour | mean p(tumour), normal |\n|---|---|---|---|---|---|---|---|---|\n"
    )
    ordered = sorted(rows, key=lambda r: (r["fold"] != "all", r["fold"], r["preset"], not r["unseen"]))
    lines = []
    for r in ordered:
        scanner = f"**{r['scanner']}** (unseen)" if r["unseen"] else f"{r['scanner']} (trained on)"
        n_patients = r["n_slides"]
        cells = (
            [f"{r[m]:.3f} ± {r[m + '_sd']:.3f}" for m in ("auc", "accuracy")]
            + [f"{r['calls_changed']:.1f} of {n_patients}"]
            + [f"{r[m]:.3f} ± {r[m + '_sd']:.3f}" for m in ("ece", "p_tumour_tumour", "p_tumour_normal")]
        )
        lines.append(f"| {r['fold']} | {r['preset']} | {scanner} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def preset_description(preset: str) -> str:
    base = preset.removesuffix(UNCALIBRATED).removesuffix(ON_TRAIN_AND_VAL)
    return LOSS_PRESETS[base].describe() if base in LOSS_PRESETS else preset


def write_results(out_dir: str | Path, config: UnseenScannerConfig, runs: list[dict[str, Any]]) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(runs)
    payload = {
        "config": json.loads(json.dumps(asdict(config), default=str)),
        "rows": rows,
        "unseen_summary": unseen_summary(rows),
        "runs": runs,
    }
    return atomic_write_text(out / "unseen_scanner.json", json.dumps(payload, indent=2, default=float))
