"""``wsirobust`` command line: the same compute API the widgets call.

Results go to standard output; progress of the long commands to standard error (bars on a terminal,
plain lines otherwise, none with ``--quiet``; see :mod:`.cli_progress`)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from .cli_progress import ProgressDisplay
from .errors import WsiRobustError, is_user_error, user_message


def _display(args: argparse.Namespace) -> ProgressDisplay:
    """The command's progress on standard error (nothing with ``--quiet``)."""
    return ProgressDisplay(quiet=args.quiet)


def _cmd_generate_cohort(args: argparse.Namespace) -> int:
    from .synthetic import CohortConfig, cohort_is_complete, generate_cohort

    cfg = CohortConfig(
        seed=args.seed,
        width=args.width,
        height=args.height,
        mpp=args.mpp,
        atypia=args.atypia,
        rescanned_train_patients=args.rescanned_train_patients,
        reference_patients=args.reference_patients,
        workers=args.workers,
    )
    if cohort_is_complete(args.out, cfg) and not args.force:
        print(f"cohort already complete: {Path(args.out) / 'cohort.csv'}")
        return 0
    start = time.perf_counter()
    with _display(args) as display:
        csv_path = generate_cohort(args.out, cfg, force=args.force, progress=display)
    print(f"wrote {csv_path} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_generate_slide(args: argparse.Namespace) -> int:
    from .synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    spec = SyntheticSlideSpec.make(
        TissueSpec(seed=args.seed, tumour=args.tumour, width=args.width, height=args.height, mpp=args.mpp),
        args.scanner,
    )
    start = time.perf_counter()
    with _display(args) as display:
        result = write_synthetic_slide(spec, args.out, progress=display)
    levels = ", ".join(f"{w}x{h}" for w, h in result.level_sizes)
    print(f"wrote {result.slide_path} ({levels}) in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import format_metadata, open_slide

    status = 0
    for path in args.slides:
        try:
            with open_slide(path, mpp=args.mpp) as slide:
                meta = slide.metadata.to_dict()
        except WsiRobustError as exc:  # this slide is unusable: say why, go on with the next
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(meta))
        else:
            print(format_metadata(meta) + "\n")
    return status


def _cmd_info_model(args: argparse.Namespace) -> int:
    from .mil import ModelCard

    card = ModelCard.load(args.model)
    print(json.dumps(card.to_dict(), indent=2) if args.json else card.to_text())
    return 0


def _slides_and_mpp(inputs: Sequence[str], mpp: float | None) -> tuple[list[str], dict[str, float]]:
    """The slides of ``inputs`` and their pixel size overrides (a CSV's mpp column, else ``--mpp``)."""
    from .features import slides_with_mpp

    slides = slides_with_mpp(inputs, mpp)
    return [path for path, _ in slides], {path: m for path, m in slides if m is not None}


def _cmd_extract(args: argparse.Namespace) -> int:
    from .features import ExtractConfig, default_cache_dir, extract_cohort
    from .tiling import TilingConfig

    paths, slide_mpp = _slides_and_mpp(args.inputs, args.mpp)

    config = ExtractConfig(
        cache_dir=args.cache or str(default_cache_dir()),
        encoder=args.encoder,
        weights=args.weights,
        allow_hub=args.allow_hub,
        tiling=TilingConfig(
            tile_size=args.tile_size, target_mpp=args.target_mpp, min_tissue_fraction=args.min_tissue
        ),
        device=args.device,
        batch_size=args.batch_size,
        h5_dir=args.h5_dir,
        color=args.color,
    )
    counts: dict[str, int] = {}
    with _display(args) as display:
        for r in extract_cohort(
            paths,
            config,
            scheduler=args.scheduler,
            n_workers=args.workers,
            slide_mpp=slide_mpp,
            progress=display,
        ):
            counts[r.status] = counts.get(r.status, 0) + 1
            line = f"{r.status:9s} {Path(r.slide).name}: {r.n_tiles} tiles in {r.seconds:.1f} s"
            display.echo(line if r.status != "failed" else f"{r.status:9s} {Path(r.slide).name}: {r.error}")
            if r.warning:
                display.echo(f"warning   {Path(r.slide).name}: {r.warning}", file=sys.stderr)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"{len(paths)} slide(s): {summary}")
    return 1 if counts.get("failed") else 0


def _extract_config(args: argparse.Namespace, encoder: str):  # type: ignore[no-untyped-def]
    from .features import ExtractConfig, default_cache_dir

    return ExtractConfig(
        cache_dir=args.cache or str(default_cache_dir()),
        encoder=encoder,
        weights=getattr(args, "weights", None),
        allow_hub=getattr(args, "allow_hub", False),
        device=args.device,
        color=getattr(args, "color", "as-scanned"),
    )


def _progress_line(item: object) -> str:
    """A training step as printed on standard output: an epoch's losses, or a stage's message."""
    from .mil import EpochReport

    if isinstance(item, EpochReport):
        terms = " ".join(f"{k}={v:.3f}" for k, v in item.losses.items())
        mark = " *" if item.improved else ""
        return f"epoch {item.epoch:3d}/{item.n_epochs}  {terms}  val_auc={item.val_auc:.3f}{mark}"
    return str(getattr(item, "message", item))


def _cmd_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .cohort import REFERENCE, TRAIN, read_cohort_table
    from .mil import LOSS_PRESETS, TrainConfig, drive, resolve_preset, train_cohort

    harmonised = args.harmonise != "none"
    preset = resolve_preset(args.loss, read_cohort_table(args.cohort).split(TRAIN, REFERENCE), harmonised)
    print(f"loss configuration: {preset}" + (" (auto)" if args.loss != preset else ""), flush=True)
    losses = LOSS_PRESETS[preset]
    config = replace(TrainConfig(), epochs=args.epochs, seed=args.seed, losses=losses)
    extract = _extract_config(args, args.encoder)
    harmonise_to = args.harmonise if harmonised else None
    with _display(args) as display:
        job = train_cohort(
            args.cohort,
            args.out,
            extract,
            config,
            workers=args.workers,
            harmonise_to=harmonise_to,
            mpp=args.mpp,
            progress=display,
        )
        result = drive(job, lambda item: display.echo(_progress_line(item)))
    best = result.config.metrics
    print(
        f"saved {result.checkpoint_path} (best epoch {result.best_epoch}, "
        f"val AUC {best.get('val_auc', float('nan')):.3f}, "
        f"losses: {losses.describe()})"
    )
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from .mil import (
        TrainedHead,
        drive,
        extract_config_for,
        predict_slides,
        write_predictions_csv,
    )

    head = TrainedHead.load(args.model)
    slides, slide_mpp = _slides_and_mpp(args.slides, args.mpp)
    extract = extract_config_for(head, args.cache, args.device)
    with _display(args) as display:
        job = predict_slides(
            head, slides, extract, args.site, slide_mpp, args.max_unreadable, progress=display
        )
        outcomes = drive(job)
    ok = [o for o in outcomes if o.prediction is not None]
    if head.config.notice and ok:  # the model's own caveat, once, above its predictions
        print(f"notice: {head.config.notice}")
    for o in outcomes:
        if o.warning:
            print(f"warning   {Path(o.slide).name}: {o.warning}", file=sys.stderr)
        if o.prediction is None:
            print(f"failed    {Path(o.slide).name}: {o.error}", file=sys.stderr)
        else:
            label = head.label_names[o.prediction.label_index]
            print(f"{label:10s} p={o.prediction.probabilities.max():.3f}  {Path(o.slide).name}")
            if o.scanner is not None and o.scanner.unlike_training:
                print(f"warning   {Path(o.slide).name}: {o.scanner.warning()}", file=sys.stderr)
    if ok:
        path = write_predictions_csv(
            args.out,
            [o.slide for o in ok],
            [o.prediction for o in ok],  # type: ignore[misc]
            head.label_names,
            [o.scanner for o in ok],
        )
        print(f"wrote {path} ({len(ok)} slide(s))")
    return 1 if len(ok) < len(outcomes) else 0


def _cmd_diagnose(args: argparse.Namespace) -> int:
    from .diagnostics import diagnose_cohort_csv, headline, metric_rows, write_diagnostics
    from .mil import TrainedHead, drive

    splits = [s.strip() for s in args.splits.split(",")] if args.splits else None
    head = TrainedHead.load(args.model)
    with _display(args) as display:
        job = diagnose_cohort_csv(
            args.cohort, head, splits, args.cache, args.device, args.mpp, progress=display
        )
        diag = drive(job)
    paths = write_diagnostics(diag, args.out)
    print(headline(diag))
    rows = metric_rows(diag)
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    for m in diag.per_site:
        print(
            f"  {m.site:10s} n={m.n_slides:3d}  AUC {m.auc:.3f}  "
            f"bal.acc {m.balanced_accuracy:.3f}  ECE {m.ece:.3f}"
        )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_profiles(args: argparse.Namespace) -> int:
    from .diagnostics import estimate_cohort_profiles
    from .mil import drive

    cohort = Path(args.cohort)
    out = args.out or cohort.with_name(f"{cohort.stem}_profiles.json")
    with _display(args) as display:
        job = estimate_cohort_profiles(cohort, out, args.mpp, progress=display)
        path = drive(job, lambda p: display.echo(p.message))
    print(f"wrote {path}")
    return 0


def _cmd_benchmark_shortcut(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .benchmarking import (
        ShortcutConfig,
        markdown_table,
        prepare,
        run_benchmark,
        summarise,
        usable_presets,
        write_results,
    )
    from .mil import LOSS_PRESETS, TrainConfig
    from .synthetic import CohortConfig

    cohort = CohortConfig(
        workers=args.workers,
        rescanned_train_patients=args.rescanned_train_patients,
        reference_patients=args.reference_patients,
    )
    if args.small:
        cohort = replace(cohort, width=1024, height=768, patients_train=24, patients_test_id=8)
    config = ShortcutConfig(
        work_dir=args.work or str(Path(args.out) / "work"),
        cohort=cohort,
        encoder=args.encoder,
        presets=tuple(args.presets.split(","))
        if args.presets
        else usable_presets(cohort, harmonised=args.harmonise is not None),
        seeds=tuple(range(args.seeds)),
        train=replace(TrainConfig(), epochs=args.epochs),
        workers=args.workers,
        cache_dir=args.cache,
        harmonise=args.harmonise,
    )
    unknown = [name for name in config.presets if name not in LOSS_PRESETS]
    if unknown:
        print(
            f"error: unknown preset(s) {', '.join(unknown)}; choose from {', '.join(LOSS_PRESETS)}",
            file=sys.stderr,
        )
        return 2
    runs = []
    with _display(args) as display:
        data = prepare(config, log=display.echo, progress=display)
        for run in run_benchmark(data, config):
            runs.append(run)
            display.echo(
                f"{run['preset']:12s} seed {run['seed']}: AUC id {run['auc_id']:.3f} "
                f"shifted {run['auc_shifted']:.3f} "
                f"site {run['site_predictability']:.2f} (chance up to {run['probe_chance']:.2f}, "
                f"var {run['site_variance']:.2f}) "
                f"loc {run['localisation']:.3f}"
            )
    path = write_results(args.out, config, runs)
    table = markdown_table(summarise(runs), len(data.table.site_names))
    (Path(args.out) / "shortcut_benchmark.md").write_text(table)
    print(table)
    print(f"wrote {path}")
    return 0


def _add_rescan_options(p: argparse.ArgumentParser) -> None:
    """Re-scan options of the synthetic cohort (generate-cohort, benchmark-shortcut)."""
    p.add_argument(
        "--rescanned-train-patients",
        type=int,
        default=0,
        help="per label, training patients also scanned on every other scanner (paired re-scans)",
    )
    p.add_argument(
        "--reference-patients",
        type=int,
        default=0,
        help="per label, unlabelled patients scanned on every scanner (split 'reference', re-scans only)",
    )


def _add_quiet_option(p: argparse.ArgumentParser) -> None:
    """``--quiet`` of the long commands."""
    p.add_argument(
        "--quiet",
        action="store_true",
        help="no progress on standard error (results, warnings and errors still print)",
    )


def _mpp_value(text: str) -> float:
    """``--mpp``: a plausible pixel size in µm/px."""
    from .io import PLAUSIBLE_MPP_RANGE

    lo, hi = PLAUSIBLE_MPP_RANGE
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not lo <= value <= hi:  # NaN fails too
        raise argparse.ArgumentTypeError(f"{text!r} is not a pixel size; give µm/px within {lo:g}..{hi:g}")
    return value


def _share_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share between 0 and 1")
    return value


def _add_colour_option(p: argparse.ArgumentParser) -> None:
    """``--color`` of the commands that embed slides for training (prediction uses the model's)."""
    from .io import COLOUR_MODES

    p.add_argument(
        "--color",
        choices=COLOUR_MODES,
        default="as-scanned",
        help="the slides' pixels as scanned, or converted to sRGB with their embedded ICC profiles "
        "(default as-scanned); a model remembers its choice and prediction applies it",
    )


def _add_mpp_option(p: argparse.ArgumentParser, cohort_csv: bool = True) -> None:
    """``--mpp`` of the commands that read slides (the same override as ``open_slide(path, mpp=...)``)."""
    help_text = (
        "pixel size in µm/px for every slide of this command, replacing the one in its file (for slides "
        "without one, as many TCGA slides, or with a wrong one)"
    )
    if cohort_csv:
        help_text += "; where a cohort CSV's mpp column is filled, that value wins for the slide"
    p.add_argument("--mpp", type=_mpp_value, default=None, metavar="UM_PER_PX", help=help_text)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(cohort_dir=Path(args.cohort), out_dir=Path(args.out), headless=args.headless)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wsirobust", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate-cohort", help="generate the synthetic multi-scanner cohort")
    p.add_argument("out", help="output folder (cohort.csv, cohort.json, slides/)")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--height", type=int, default=1536)
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--atypia", type=float, default=0.5, help="tumour difficulty: 1 = obvious, 0.3 = subtle")
    _add_rescan_options(p)
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    _add_quiet_option(p)
    p.set_defaults(func=_cmd_generate_cohort)

    p = sub.add_parser("generate-slide", help="generate one synthetic slide (any size)")
    p.add_argument("out", help="output .tiff path")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--height", type=int, default=2048)
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scanner", default="A")
    p.add_argument("--tumour", action="store_true")
    _add_quiet_option(p)
    p.set_defaults(func=_cmd_generate_slide)

    p = sub.add_parser("info", help="print slide metadata")
    p.add_argument("slides", nargs="+")
    _add_mpp_option(p, cohort_csv=False)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "info-model",
        help="print a model's card: what it was trained on, how well it did, and its notice",
    )
    p.add_argument("model", help="model folder (model.safetensors + config.json)")
    p.add_argument("--json", action="store_true", help="the card as JSON (null where not recorded)")
    p.set_defaults(func=_cmd_info_model)

    p = sub.add_parser("extract", help="embed the tiles of many slides into the feature cache")
    p.add_argument("inputs", nargs="+", help="slides, cohort CSVs (path column) or .txt lists")
    p.add_argument("--encoder", default="effnet-lite0-imagenet")
    p.add_argument("--weights", default=None, help="local weights file for the encoder")
    p.add_argument("--allow-hub", action="store_true", help="download weights from the hub if needed")
    p.add_argument("--cache", default=None, help="feature cache folder (default: user cache)")
    p.add_argument("--h5-dir", default=None, help="also write <slide>.h5 (CLAM/TRIDENT layout) here")
    p.add_argument("--tile-size", type=int, default=224)
    p.add_argument("--target-mpp", type=float, default=0.5)
    p.add_argument("--min-tissue", type=float, default=0.25)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="LocalCluster processes (0: no Dask)")
    p.add_argument("--scheduler", default=None, help="address of an existing Dask scheduler")
    _add_quiet_option(p)
    _add_mpp_option(p)
    _add_colour_option(p)
    p.set_defaults(func=_cmd_extract)

    # (no import of .mil here: it loads torch, which every command would then pay for at start-up)
    p = sub.add_parser("train", help="train a robust MIL head on a cohort CSV")
    p.add_argument("cohort", help="CSV with path, label, scanner/site, patient, split columns")
    p.add_argument("--encoder", default="effnet-lite0-imagenet")
    p.add_argument("--weights", default=None, help="local weights file for the encoder")
    p.add_argument("--out", required=True, help="model folder (safetensors + JSON, saved atomically)")
    p.add_argument(
        "--loss",
        default="auto",
        help="loss configuration: auto or a preset (plain, robust-moment, robust-paired, robust-site, ...; "
        "an unknown name is refused with the list); auto: robust-site with --harmonise, else "
        "robust-paired when training patients were re-scanned at another site, else robust-moment",
    )
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--harmonise",
        default="auto",
        metavar="auto|SITE|none",
        help="re-render every slide's tiles into one training site's colour profile before embedding "
        "(default auto: the least sharp site; best on the shortcut benchmark); saved with the model and "
        "applied again at prediction. Needs a loss without scanner-swapped views (--loss auto picks "
        "robust-site); none: the slides as scanned",
    )
    p.add_argument("--cache", default=None, help="feature cache folder (default: user cache)")
    p.add_argument("--device", default="auto")
    p.add_argument("--workers", type=int, default=2, help="processes for feature extraction (0: in-process)")
    _add_quiet_option(p)
    _add_mpp_option(p)
    _add_colour_option(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("predict", help="predict slides with a trained head")
    p.add_argument("model", help="model folder")
    p.add_argument("slides", nargs="+", help="slides, cohort CSVs (path column) or .txt lists")
    p.add_argument("--out", default="predictions.csv")
    p.add_argument("--site", default=None, help="site of the slides (for per-site standardised heads)")
    p.add_argument("--cache", default=None)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--max-unreadable",
        type=_share_value,
        default=0.2,
        metavar="SHARE",
        help="refuse a slide when more than this share of its tissue tiles overlap damaged file tiles "
        "(default 0.2); the rest are left out and listed",
    )
    _add_quiet_option(p)
    _add_mpp_option(p)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("diagnose", help="cohort robustness metrics of a trained head")
    p.add_argument("cohort", help="cohort CSV (path, label, site/scanner, patient, split)")
    p.add_argument("--model", required=True, help="model folder")
    p.add_argument(
        "--out",
        default="diagnostics",
        help="folder for diagnostics.json, per_site.csv, robustness.csv, projection.png",
    )
    p.add_argument("--splits", default=None, help="comma-separated splits to use (default: all slides)")
    _add_quiet_option(p)
    p.add_argument("--cache", default=None, help="feature cache folder")
    p.add_argument("--device", default="auto")
    _add_mpp_option(p)
    p.set_defaults(func=_cmd_diagnose)

    p = sub.add_parser("profiles", help="estimate a colour/stain profile per scanner/site of a cohort")
    p.add_argument("cohort", help="cohort CSV (path, label, site/scanner)")
    p.add_argument("--out", default=None, help="profiles JSON (default: COHORT_profiles.json beside the CSV)")
    _add_quiet_option(p)
    _add_mpp_option(p)
    p.set_defaults(func=_cmd_profiles)

    p = sub.add_parser("benchmark-shortcut", help="the scanner-shortcut benchmark (plain vs robust heads)")
    p.add_argument("--out", required=True, help="folder for shortcut_benchmark.json/.md")
    p.add_argument("--work", default=None, help="cohort + features folder (default: OUT/work)")
    p.add_argument("--cache", default=None, help="feature cache (default: WORK/features)")
    p.add_argument("--encoder", default="effnet-lite0-imagenet")
    p.add_argument(
        "--presets",
        default=None,
        help="comma-separated loss presets (default: all that the cohort supports)",
    )
    _add_rescan_options(p)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--small", action="store_true", help="smaller slides (a quick check, not the reference)")
    _add_quiet_option(p)
    p.add_argument(
        "--harmonise",
        default=None,
        metavar="auto|SITE",
        help="re-render every slide into one training site's colour profile before embedding (auto: the "
        "least sharp); presets that need scanner-swapped views are skipped",
    )
    p.set_defaults(func=_cmd_benchmark_shortcut)

    p = sub.add_parser("demo", help="open napari with a sample slide and the plugin's widgets")
    p.add_argument("--cohort", default="sample_data/cohort", help="cohort folder (generated if absent)")
    p.add_argument("--out", default="demo_output", help="folder for the headless screenshot/summary")
    p.add_argument("--headless", action="store_true", help="screenshot and exit instead of running")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. An error meant for the user prints its message (exit 2); anything else is an
    internal error: one line saying so, and its traceback in the log on standard error (exit 3)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except Exception as exc:
        print(f"error: {user_message(exc)}", file=sys.stderr)
        if is_user_error(exc):
            return 2
        traceback.print_exception(exc, file=sys.stderr)  # the log of a command line is standard error
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
