"""Leave-one-scanner-out benchmark: heads tested on scanners they never saw in training.

Run: ``.venv/bin/python benchmarks/bench_unseen_scanner.py`` (writes the "unseen-scanner" section of
BENCHMARKS.md and benchmarks/_work/unseen_out/unseen_scanner.json). Folds (see
``napari_wsirobust.benchmarking.unseen``): ``all`` trains on the training profiles A, B, C and tests on
the unseen profiles U1-U3; ``without-X`` trains without profile X and tests on X. Cohorts and features
are cached under benchmarks/_work/unseen, and finished (fold, configuration, seed) runs in
benchmarks/_work/unseen_out/runs.jsonl, so an interrupted run resumes where it stopped.
``--prepare-only`` generates and embeds the folds' cohorts and stops; ``--presets``/``--folds``/``--seeds``
restrict the run. Tiles are harmonised as the default training does (``--harmonise auto``);
``--harmonise none`` trains on the tiles as scanned.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402
from napari_wsirobust.benchmarking.unseen import (  # noqa: E402
    ON_TRAIN_AND_VAL,
    UNCALIBRATED,
    UnseenScannerConfig,
    fold_presets,
    make_folds,
    markdown_table,
    prepare_fold,
    run_fold,
    scanner_checks,
    summarise,
    unseen_summary,
    warning_rates,
    write_results,
)
from napari_wsirobust.stain import UNLIKE_THRESHOLD  # noqa: E402
from napari_wsirobust.synthetic import UNSEEN_PROFILES, get_profile  # noqa: E402

WORK = Path(__file__).resolve().parent / "_work"


def _base(preset: str) -> str:
    return preset.removesuffix(UNCALIBRATED).removesuffix(ON_TRAIN_AND_VAL)


def load_runs(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def profiles_table() -> str:
    lines = [
        "| unseen scanner | what it imitates | H, E scale | glass RGB | gamma | blur µm | noise | JPEG |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name in UNSEEN_PROFILES:
        p = get_profile(name)
        glass = ", ".join(f"{v:.0f}" for v in p.background_rgb)
        lines.append(
            f"| {name} | {p.description} | {p.hematoxylin_scale}, {p.eosin_scale} | {glass} | {p.gamma} | "
            f"{p.blur_sigma_um} | {p.noise_sigma} | {p.jpeg_quality} |"
        )
    return "\n".join(lines) + "\n"


def summary_table(summary: dict[str, dict[str, float]]) -> str:
    lines = [
        "| configuration | AUC | accuracy | calls changed (of 12) | worst scanner's calls changed | ECE | "
        "worst ECE | mean p(tumour), tumour | mean p(tumour), normal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for preset, s in summary.items():
        lines.append(
            f"| {preset} | {s['auc']:.3f} | {s['accuracy']:.3f} | {s['calls_changed']:.2f} | "
            f"{s['worst_calls_changed']:.1f} | {s['ece']:.3f} | {s['worst_ece']:.3f} | "
            f"{s['p_tumour_tumour']:.3f} | {s['p_tumour_normal']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def variants_text(folder: Path | None) -> str:
    """The calibration variants of one ``--calibration-variants`` run (same heads, three calibrations)."""
    if folder is None:
        return ""
    runs = load_runs(folder / "runs.jsonl")
    if not runs:
        return ""
    folds = ", ".join(dict.fromkeys(f"`{r['fold']}`" for r in runs))
    seeds = len({r["seed"] for r in runs})
    return (
        f"\nCalibration variants (fold {folds}, {seeds} seeds; the same trained heads scored three ways: "
        "calibrated on the validation slides (the default), uncalibrated, calibrated on the training and "
        "validation slides), over the unseen scanners:\n\n" + summary_table(unseen_summary(summarise(runs)))
    )


def warning_table(checks: list[dict]) -> str:
    lines = ["| fold | test scanner | slides | warning fires on |", "|---|---|---|---|"]
    for fold in dict.fromkeys(c["fold"] for c in checks):
        chosen = [c for c in checks if c["fold"] == fold]
        rates = warning_rates(chosen)
        for scanner in dict.fromkeys(c["scanner"] for c in chosen):
            n = sum(c["scanner"] == scanner for c in chosen)
            unseen = any(c["unseen"] for c in chosen if c["scanner"] == scanner)
            name = f"**{scanner}** (unseen)" if unseen else f"{scanner} (trained on)"
            lines.append(f"| {fold} | {name} | {n} | {rates[scanner]:.0%} |")
    for label, unseen in (("all seen-scanner slides", False), ("all unseen-scanner slides", True)):
        fired = [c["distance"] > UNLIKE_THRESHOLD for c in checks if c["unseen"] == unseen]
        if fired:
            lines.append(f"| all folds | {label} | {len(fired)} | {np.mean(fired):.0%} |")
    return "\n".join(lines) + "\n"


def calibration_table(checks: list[dict]) -> str:
    lines = ["| property | seen: 99th pct | unseen: share beyond 1 |", "|---|---|---|"]
    names = dict.fromkeys(k for c in checks for k in c["differences"])
    for name in names:
        seen = [c["differences"][name] for c in checks if not c["unseen"] and name in c["differences"]]
        unseen = [c["differences"][name] for c in checks if c["unseen"] and name in c["differences"]]
        if seen and unseen:
            lines.append(f"| {name} | {np.percentile(seen, 99):.2f} | {np.mean(np.array(unseen) > 1):.0%} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--presets", nargs="*", default=[], help="loss presets (default: every usable one)")
    parser.add_argument("--folds", nargs="*", default=[], help="folds (default: all, without-A/B/C)")
    parser.add_argument("--harmonise", default="auto", help="'auto', a site, or 'none'")
    parser.add_argument("--prepare-only", action="store_true", help="generate and embed, then stop")
    parser.add_argument("--out", type=Path, default=WORK / "unseen_out", help="results and finished runs")
    parser.add_argument("--work", type=Path, default=WORK / "unseen")
    parser.add_argument("--no-write", action="store_true", help="leave BENCHMARKS.md alone")
    parser.add_argument("--report-only", action="store_true", help="write the report from finished runs")
    parser.add_argument(
        "--variants-from", type=Path, help="an --out folder of a --calibration-variants run to report beside"
    )
    parser.add_argument(
        "--calibration-variants", action="store_true", help="also score a calibration fitted on train + val"
    )
    args = parser.parse_args()
    config = UnseenScannerConfig(
        work_dir=str(args.work),
        seeds=tuple(range(args.seeds)),
        presets=tuple(args.presets),
        folds=tuple(args.folds),
        harmonise=None if args.harmonise == "none" else args.harmonise,
        calibration_variants=args.calibration_variants,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    runs_path = args.out / "runs.jsonl"
    runs = load_runs(runs_path)
    done = {(r["fold"], _base(r["preset"]), r["seed"]) for r in runs}
    start = time.perf_counter()
    checks: list[dict] = []
    for fold in make_folds(config):
        checks_path = args.out / f"checks_{fold.name}.json"
        if args.report_only:  # from the finished runs and checks on disk
            checks += [{**c, "fold": fold.name} for c in json.loads(checks_path.read_text())]
            continue
        data = prepare_fold(config, fold)
        if not checks_path.exists():
            checks_path.write_text(
                json.dumps(scanner_checks(data, fold, config.cache_dir or str(args.work / "features")))
            )
        checks += [{**c, "fold": fold.name} for c in json.loads(checks_path.read_text())]
        if args.prepare_only:
            continue
        pending = [
            (p, s) for p in fold_presets(config, fold) for s in config.seeds if (fold.name, p, s) not in done
        ]
        if not pending:
            continue
        todo = replace(config, presets=tuple(dict.fromkeys(p for p, _ in pending)))
        for run in run_fold(todo, fold, data):
            if (run["fold"], run["preset"], run["seed"]) in done:  # another preset's seed still to run
                continue
            runs.append(run)
            with runs_path.open("a") as fh:
                fh.write(json.dumps(run, default=float) + "\n")
            unseen = {s: f"{v['auc']:.3f}/{v['calls_changed']:.0f}" for s, v in run["scanners"].items()}
            elapsed = time.perf_counter() - start
            print(f"[{elapsed:.0f} s] {run['fold']} {run['preset']} seed {run['seed']}: {unseen}")
    print(calibration_table(checks))
    print(warning_table(checks))
    if args.prepare_only:
        return 0
    wanted = {(f.name, p) for f in make_folds(config) for p in fold_presets(config, f)}
    runs = [r for r in runs if (r["fold"], _base(r["preset"])) in wanted and r["seed"] in config.seeds]
    write_results(args.out, config, runs)
    rows = summarise(runs)
    summary = unseen_summary(rows)
    body = (
        "## Unseen scanners: leave-one-scanner-out\n\n"
        f"`.venv/bin/python benchmarks/bench_unseen_scanner.py` on {machine_line()}. Synthetic cohorts "
        "confounded as in the shortcut benchmark, tiles harmonised as the default training does "
        f"(`--harmonise {args.harmonise}`). Fold `all`: trained on scanners A, B, C, tested on three "
        "scanner profiles outside every training range (below). Fold `without-X`: trained on the other two "
        "training profiles, tested on X. Each fold's 12 test_ood patients are rendered by every training "
        "scanner of the fold and by each unseen one. *Calls changed*: patients whose call on that scanner "
        "differs from their call on the training scanners (majority of those renderings). ECE over 10 bins. "
        f"Mean ± SD over {args.seeds} seeds. Configurations run: "
        + ", ".join(dict.fromkeys(f"`{_base(r['preset'])}`" for r in runs))
        + " (every head scored calibrated, the default, and uncalibrated).\n\n"
        + profiles_table()
        + "\nOver all unseen test scanners (the three unseen profiles of `all` and the held-out profile of "
        "each `without-X` fold), mean over scanners of the seed means:\n\n"
        + summary_table(summary)
        + variants_text(args.variants_from)
        + "\nPer fold and test scanner:\n\n"
        + markdown_table(rows)
        + "\n### The unlike-training warning\n\n"
        "Each test slide's colour profile against its fold's training sites (profiled from their "
        "training slides, as training does; `napari_wsirobust.stain.distance`): the distance to the nearest "
        f"site is the largest property difference in tolerances; the warning fires beyond "
        f"{UNLIKE_THRESHOLD:g}. Share of test slides (test_id and test_ood) it fires on:\n\n"
        + warning_table(checks)
        + "\nLargest scaled difference per property (99th percentile over seen-scanner test slides, and "
        "the share of unseen-scanner slides beyond 1 tolerance in that property):\n\n"
        + calibration_table(checks)
    )
    print(body)
    if not args.no_write:
        write_section("unseen-scanner", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
