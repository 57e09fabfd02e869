"""Scaling benchmark: whole-slide analysis time and peak resident memory against slide size.

Each generated slide (10000x7500, 20000x15000 and 40000x30000 by default) is analysed whole
(``analyse_region`` with ``Scope.whole()``) with the bundled demo head and its encoder, in a fresh
subprocess (so the peak resident memory is that run's alone) on a fresh, empty feature cache (cold:
tissue mask, harmonisation plan and every embedding computed). The expectation is time linear in the
number of tissue tiles and memory flat in the slide size; the report shows both.

Run: ``.venv/bin/python benchmarks/bench_scaling.py`` (writes the "scaling" section of BENCHMARKS.md);
``--sizes 10000x7500,20000x15000`` to choose sizes; ``--smoke`` for three tiny slides that check the
script runs (prints only). Slides are generated into benchmarks/_work/scaling and reused when one with
the same parameters is there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS  # noqa: E402
from _report import machine_line, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work" / "scaling"
SIZES = "10000x7500,20000x15000,40000x30000"
SMOKE_SIZES = "1024x768,1536x1152,2048x1536"
SEED, SCANNER = 77, "B"
RESULT = "RESULT "  # prefix of the child's one JSON line on standard output


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"WxH,WxH"`` as [(W, H), ...]."""
    return [(int(w), int(h)) for w, h in (part.lower().split("x") for part in text.split(",") if part)]


def slide_for(width: int, height: int) -> Path:
    """The generated slide of this size, reused when its TIFF description names the same spec."""
    import tifffile

    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide
    from napari_wsirobust.synthetic.slide import ground_truth_path_for

    spec = SyntheticSlideSpec.make(TissueSpec(seed=SEED, tumour=True, width=width, height=height), SCANNER)
    path = WORK / f"scaling_{width}x{height}_seed{SEED}_{SCANNER}.tiff"
    if path.exists() and ground_truth_path_for(path).exists():
        with tifffile.TiffFile(path) as tif:
            if tif.pages[0].description == spec.description():
                return path
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    write_synthetic_slide(spec, path)
    print(f"generated {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def child(slide: str, cache: str, device: str) -> None:
    """Analyse ``slide`` whole and print one JSON line: tiles, seconds, memory, and seconds from each
    progress stage's first report to the next stage's (embedding reports after each batch, so the
    first batch counts towards the stage before it)."""
    from napari_wsirobust.analysis import AnalysisRequest, analyse_region
    from napari_wsirobust.features import select_device
    from napari_wsirobust.models import demo_model_dir
    from napari_wsirobust.tiling import Scope

    request = AnalysisRequest(
        slide_path=slide, model_dir=str(demo_model_dir()), scope=Scope.whole(), cache_dir=cache, device=device
    )
    stages: dict[str, float] = {}
    with PeakRSS() as mem:
        start = last = time.perf_counter()
        run, stage = analyse_region(request), None
        while True:
            try:
                progress = next(run)
            except StopIteration as stop:
                result = stop.value
                break
            now = time.perf_counter()
            if stage is not None:
                stages[stage] = stages.get(stage, 0.0) + now - last
            stage, last = progress.stage, now
        seconds = time.perf_counter() - start
    if stage is not None:
        stages[stage] = stages.get(stage, 0.0) + start + seconds - last
    out = {
        "tiles": len(result.grid),
        "embedded": result.n_embedded,
        "seconds": seconds,
        "stages": stages,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # Linux: KiB
        "start_rss_mb": mem.baseline / 2**20,
        "growth_mb": (mem.peak - mem.baseline) / 2**20,
        "device": str(select_device(device)),
        "label": result.predicted_label,
    }
    print(RESULT + json.dumps(out), flush=True)


def measure(path: Path, device: str, src: str | None = None) -> dict:
    """One cold whole-slide analysis of ``path`` in a fresh interpreter (with the package from the
    source tree ``src`` when given, e.g. an export of an earlier commit)."""
    env = {**os.environ, "PYTHONPATH": src} if src else None
    with tempfile.TemporaryDirectory(prefix="bench_scaling_cache_") as cache:
        done = subprocess.run(
            [sys.executable, __file__, "--child", str(path), "--cache", cache, "--device", device],
            capture_output=True,
            text=True,
            env=env,
        )
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"analysis of {path.name} failed (exit {done.returncode})")
    return json.loads(lines[-1][len(RESULT) :])


def fit_lines(rows: list[tuple[tuple[int, int], dict]]) -> list[str]:
    """Time against tissue tiles (per-tile cost per size, least-squares line) and memory flatness."""
    tiles = np.array([r["tiles"] for _, r in rows], float)
    seconds = np.array([r["seconds"] for _, r in rows], float)
    peaks = np.array([r["peak_rss_mb"] for _, r in rows], float)
    per_tile = seconds / np.maximum(tiles, 1)
    ratios = ", ".join(f"{w}x{h}: {p / per_tile[0]:.2f}" for ((w, h), _), p in zip(rows, per_tile))
    lines = [f"- Seconds per tissue tile relative to the smallest slide: {ratios} (1.00 = linear)."]
    if len(rows) >= 2 and np.ptp(tiles) > 0:
        slope, intercept = np.polyfit(tiles, seconds, 1)
        predicted = intercept + slope * tiles
        residual = float(np.sum((seconds - predicted) ** 2))
        total = float(np.sum((seconds - seconds.mean()) ** 2))
        r2 = 1 - residual / total if total > 0 else 1.0
        lines.append(
            f"- Least-squares line: seconds = {intercept:.1f} + {1000 * slope:.1f} x (tissue tiles / 1000), "
            f"R² = {r2:.4f} (the intercept is the fixed cost: model, encoder, slide opening)."
        )
    growth = ", ".join(f"{r['growth_mb']:.0f}" for _, r in rows)
    lines.append(
        f"- Peak resident memory, largest / smallest slide: {peaks[-1] / peaks[0]:.2f} "
        f"({peaks[0]:.0f} MB to {peaks[-1]:.0f} MB; growth during the analysis {growth} MB)."
    )
    return lines


def table(rows: list[tuple[tuple[int, int], dict]]) -> list[str]:
    lines = [
        "| slide (px) | tissue tiles | seconds | tiles/s | s per 1000 tiles | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for (w, h), r in rows:
        tiles, seconds = r["tiles"], r["seconds"]
        lines.append(
            f"| {w}x{h} | {tiles} | {seconds:.1f} | {tiles / seconds:.1f} | "
            f"{1000 * seconds / max(tiles, 1):.1f} | {r['peak_rss_mb']:.0f} |"
        )
    return lines


def report(rows: list[tuple[tuple[int, int], dict]], command: str) -> str:
    device = rows[0][1]["device"] if rows else "?"
    machine = (
        machine_line() if device == "cpu" else machine_line().replace("no GPU used", f"analysis on {device}")
    )
    return "\n".join(
        [
            "## Scaling: whole-slide analysis time and memory against slide size",
            "",
            f"Command: `{command}`  ",
            f"Machine: {machine}  ",
            f"Date: {time.strftime('%Y-%m-%d')}",
            "",
            f"Generated slides (seed {SEED}, scanner {SCANNER}, tumour, 0.5 µm/px), each analysed whole with "
            "the bundled demo head in a fresh process on an empty feature cache (cold). Seconds: the "
            "whole `analyse_region` run (model loading, tissue, harmonisation plan, embedding, head); "
            "peak RSS: the process's maximum resident set, imports included.",
            "",
            *table(rows),
            "",
            *fit_lines(rows),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default=None, help=f"comma-separated WxH (default {SIZES})")
    parser.add_argument("--smoke", action="store_true", help=f"tiny slides ({SMOKE_SIZES}), print only")
    parser.add_argument("--device", default="auto", help="analysis device (auto: CUDA, MPS, else CPU)")
    parser.add_argument(
        "--baseline-src",
        default=None,
        help="also analyse each slide with the package from this source tree (its src/), alternated, "
        "and write the comparison instead of the scaling table",
    )
    parser.add_argument("--baseline-note", default="", help="what the baseline tree is (for the report)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.cache, args.device)
        return
    sizes = parse_sizes(args.sizes or (SMOKE_SIZES if args.smoke else SIZES))
    if args.baseline_src:
        compare(sizes, args)
        return
    rows = []
    for size in sizes:
        path = slide_for(*size)
        rows.append((size, measure(path, args.device)))
        r = rows[-1][1]
        stages = ", ".join(f"{name} {sec:.1f}" for name, sec in r["stages"].items())
        print(f"{size[0]}x{size[1]}: {r['tiles']} tiles in {r['seconds']:.1f} s ({stages} s), ", end="")
        print(f"peak RSS {r['peak_rss_mb']:.0f} MB, on {r['device']}", flush=True)
    flags = [f"--sizes {args.sizes}"] if args.sizes else []
    flags += (["--smoke"] if args.smoke else []) + (
        [f"--device {args.device}"] if args.device != "auto" else []
    )
    command = " ".join([".venv/bin/python benchmarks/bench_scaling.py", *flags])
    text = report(rows, command)
    print("\n" + text)
    if not args.smoke:
        write_section("scaling", text)


def compare(sizes: list[tuple[int, int]], args: argparse.Namespace) -> None:
    """Whole-slide analysis of each slide by this tree and by ``args.baseline_src``, alternated."""
    lines = []
    for size in sizes:
        path = slide_for(*size)
        base_first = measure(path, args.device, args.baseline_src)
        mine = measure(path, args.device)
        base_second = measure(path, args.device, args.baseline_src)
        base_s = float(np.median([base_first["seconds"], base_second["seconds"]]))
        lines.append(
            f"| {size[0]}x{size[1]} | {mine['tiles']} | {mine['seconds']:.1f} | "
            f"{mine['tiles'] / mine['seconds']:.1f} | "
            f"{base_s:.1f} ({base_first['seconds']:.1f}, {base_second['seconds']:.1f}) | "
            f"{base_first['tiles'] / base_s:.1f} | {base_s / mine['seconds']:.2f} | "
            f"{mine['peak_rss_mb']:.0f} / {max(base_first['peak_rss_mb'], base_second['peak_rss_mb']):.0f} |"
        )
        print(lines[-1], flush=True)
    script = ".venv/bin/python benchmarks/bench_scaling.py"
    command = f"{script} --sizes {args.sizes} --baseline-src {args.baseline_src}"
    text = (
        "## Whole-slide analysis against the previous code\n\n"
        f"`{command}` on {machine_line()}. Each generated slide analysed whole with the demo head, cold (a "
        "fresh cache, a fresh process), by the previous code, this tree, then the previous code again; "
        "baseline seconds are the median of its two runs."
        + (f" Baseline: {args.baseline_note}." if args.baseline_note else "")
        + "\n\n"
        "| slide (px) | tissue tiles | this tree s | tiles/s | baseline s (runs) | tiles/s | speed-up | "
        "peak RSS MB this / baseline |\n|---|---|---|---|---|---|---|---|\n" + "\n".join(lines) + "\n"
    )
    print("\n" + text)
    if not args.smoke:
        write_section("scaling-baseline", text)


if __name__ == "__main__":
    main()
