"""``wsirobust`` command line: the same compute API the widgets call."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def _cmd_generate_cohort(args: argparse.Namespace) -> int:
    from .synthetic import CohortConfig, generate_cohort
    from .synthetic.cohort import cohort_is_complete

    cfg = CohortConfig(
        seed=args.seed, width=args.width, height=args.height, mpp=args.mpp, workers=args.workers
    )
    if cohort_is_complete(args.out, cfg) and not args.force:
        print(f"cohort already complete: {Path(args.out) / 'cohort.csv'}")
        return 0
    start = time.perf_counter()
    csv_path = generate_cohort(args.out, cfg, force=args.force)
    print(f"wrote {csv_path} in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_generate_slide(args: argparse.Namespace) -> int:
    from .synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    spec = SyntheticSlideSpec.make(
        TissueSpec(seed=args.seed, tumour=args.tumour, width=args.width, height=args.height, mpp=args.mpp),
        args.scanner,
    )
    start = time.perf_counter()
    result = write_synthetic_slide(spec, args.out)
    levels = ", ".join(f"{w}x{h}" for w, h in result.level_sizes)
    print(f"wrote {result.slide_path} ({levels}) in {time.perf_counter() - start:.1f} s")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .io import SlideError, open_slide
    from .io.describe import format_metadata

    status = 0
    for path in args.slides:
        try:
            with open_slide(path, mpp=args.mpp) as slide:
                meta = slide.metadata.to_dict()
        except (SlideError, ValueError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(meta))
        else:
            print(format_metadata(meta) + "\n")
    return status


def _cmd_extract(args: argparse.Namespace) -> int:
    from .features.cohort import ExtractConfig, extract_cohort, slides_from_inputs
    from .tiling import TilingConfig

    paths = slides_from_inputs(args.inputs)
    from .features.cache import default_cache_dir

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
    )
    counts: dict[str, int] = {}
    for r in extract_cohort(paths, config, scheduler=args.scheduler, n_workers=args.workers):
        counts[r.status] = counts.get(r.status, 0) + 1
        line = f"{r.status:9s} {Path(r.slide).name}: {r.n_tiles} tiles in {r.seconds:.1f} s"
        print(line if r.status != "failed" else f"{r.status:9s} {Path(r.slide).name}: {r.error}", flush=True)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    print(f"{len(paths)} slide(s): {summary}")
    return 1 if counts.get("failed") else 0


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
    p.add_argument("--workers", type=int, default=0, help="processes (0: one per core)")
    p.add_argument("--force", action="store_true", help="regenerate even if present")
    p.set_defaults(func=_cmd_generate_cohort)

    p = sub.add_parser("generate-slide", help="generate one synthetic slide (any size)")
    p.add_argument("out", help="output .tiff path")
    p.add_argument("--width", type=int, default=2048)
    p.add_argument("--height", type=int, default=2048)
    p.add_argument("--mpp", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--scanner", default="A")
    p.add_argument("--tumour", action="store_true")
    p.set_defaults(func=_cmd_generate_slide)

    p = sub.add_parser("info", help="print slide metadata")
    p.add_argument("slides", nargs="+")
    p.add_argument("--mpp", type=float, default=None, help="override the pixel size (µm/px)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_info)

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
    p.set_defaults(func=_cmd_extract)

    p = sub.add_parser("demo", help="open napari with a sample slide and the plugin's widgets")
    p.add_argument("--cohort", default="sample_data/cohort", help="cohort folder (generated if absent)")
    p.add_argument("--out", default="demo_output", help="folder for the headless screenshot/summary")
    p.add_argument("--headless", action="store_true", help="screenshot and exit instead of running")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
