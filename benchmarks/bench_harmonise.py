"""What harmonisation costs: embedding a whole slide with and without its tiles re-rendered into a
reference profile first (what training does by default).

A generated 2048x1536 scanner-A tumour slide (0.5 µm/px) is embedded with the default encoder into a
fresh feature cache, alternately plain and harmonised to scanner C's profile (estimated from another
scanner-C slide), ``--repeats`` times each. For the harmonised runs the slide's plan (its profile from
48 tiles plus the blur calibration on 16) is estimated afresh every time and timed on its own.

Run: ``.venv/bin/python benchmarks/bench_harmonise.py`` (writes the "harmonisation" section).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402


def _seconds(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from napari_wsirobust.encoders import create_encoder
    from napari_wsirobust.features import FeatureCache, forget_in_memory, run_to_completion
    from napari_wsirobust.io import open_slide
    from napari_wsirobust.stain import Harmonisation, estimate_slide_profile
    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide
    from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid

    work = Path(tempfile.mkdtemp(prefix="wsirobust-bench-harmonise-"))
    slide_path, reference_path = work / "slide_A.tiff", work / "reference_C.tiff"
    write_synthetic_slide(
        SyntheticSlideSpec.make(TissueSpec(seed=61, tumour=True, width=2048, height=1536), "A"), slide_path
    )
    write_synthetic_slide(
        SyntheticSlideSpec.make(TissueSpec(seed=62, tumour=False, width=1024, height=768), "C"),
        reference_path,
    )
    harmonise = Harmonisation(estimate_slide_profile(str(reference_path)), "C")
    encoder = create_encoder("effnet-lite0-imagenet")
    times: dict[str, list[float]] = {"plain": [], "harmonised": [], "plan": []}
    with open_slide(slide_path) as slide:
        grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), detect_tissue(slide))
        run_to_completion(FeatureCache(work / "warm").embed(slide, grid, encoder))  # warm-up
        for i in range(args.repeats):
            for kind in ("plain", "harmonised"):
                cache = FeatureCache(work / f"{kind}-{i}")
                forget_in_memory()  # the plan is estimated afresh each time
                start = time.perf_counter()
                if kind == "harmonised":
                    cache.prep.plan(slide, harmonise)
                    times["plan"].append(time.perf_counter() - start)
                run_to_completion(
                    cache.embed(slide, grid, encoder, harmonise=harmonise if kind != "plain" else None)
                )
                times[kind].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = len(grid)
    body = (
        "## Harmonisation cost\n\n"
        f"`.venv/bin/python benchmarks/bench_harmonise.py` on {machine_line()}. A generated 2048x1536 "
        f"scanner-A slide ({n} tissue tiles, 224 px at 0.5 µm/px), effnet-lite0-imagenet, a fresh feature "
        f"cache per run, plain and harmonised (to a scanner-C profile) alternated, {args.repeats} runs "
        "each; harmonised runs include estimating the slide's plan afresh (timed on its own too).\n\n"
        "| run | median s | per tile ms | runs (s) |\n|---|---|---|---|\n"
        + "".join(
            f"| {label} | {med[k]:.2f} | {1000 * med[k] / n:.1f} | {_seconds(times[k])} |\n"
            for k, label in (
                ("plain", "embed, slides as scanned"),
                ("harmonised", "embed, harmonised (plan included)"),
                ("plan", "the slide's plan alone"),
            )
        )
        + f"\nRatio harmonised / plain (medians): {med['harmonised'] / med['plain']:.2f}.\n"
    )
    write_section("harmonisation", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
