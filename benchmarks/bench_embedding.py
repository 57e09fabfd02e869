"""Embedding benchmark: end-to-end tiles/s from a slide versus the same model on pre-decoded
tensors of the same batch size (pipeline efficiency), for the default encoder and for the H0-mini
architecture (random weights), plus peak memory while embedding whole generated slides.

Run: ``.venv/bin/python benchmarks/bench_embedding.py`` (writes the "embedding" section of
BENCHMARKS.md). On a GPU machine add ``--device cuda``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _memory import PeakRSS  # noqa: E402
from _report import machine_line, write_section  # noqa: E402
from bench_reader import generated_slide  # noqa: E402
from napari_wsirobust.encoders import create_encoder  # noqa: E402
from napari_wsirobust.features import embed_batch, embed_tiles, run_to_completion  # noqa: E402
from napari_wsirobust.io import open_slide  # noqa: E402
from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid, read_tile  # noqa: E402


def efficiency(
    encoder_name: str, slide_path: Path, n_tiles: int, batch: int, device: torch.device, repeats: int
):
    encoder = create_encoder(encoder_name, random_init=encoder_name != "effnet-lite0-imagenet", device=device)
    slide = open_slide(slide_path)
    grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), detect_tissue(slide))
    grid = grid.subset(np.arange(len(grid)) < n_tiles)
    tiles = np.stack([read_tile(slide, grid, i) for i in range(len(grid))])
    embed_batch(encoder, tiles[:batch], device)  # warm-up
    e2e, model_only = [], []
    for r in range(repeats):
        for kind in ("e2e", "model") if r % 2 == 0 else ("model", "e2e"):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            if kind == "e2e":
                run_to_completion(embed_tiles(slide, grid, encoder, batch_size=batch))
            else:
                for i in range(0, len(tiles), batch):
                    embed_batch(encoder, tiles[i : i + batch], device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            (e2e if kind == "e2e" else model_only).append(len(grid) / (time.perf_counter() - t))
    return {
        "tiles": len(grid),
        "e2e": statistics.median(e2e),
        "model": statistics.median(model_only),
        "ratio": statistics.median(e2e) / statistics.median(model_only),
    }


def memory_whole_slide(slide_path: Path, device: torch.device) -> dict[str, float]:
    encoder = create_encoder("effnet-lite0-imagenet", device=device)
    slide = open_slide(slide_path)
    grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), detect_tissue(slide))
    embed_batch(encoder, np.zeros((32, 224, 224, 3), np.uint8), device)
    start = time.perf_counter()
    with PeakRSS() as mem:
        features = run_to_completion(embed_tiles(slide, grid, encoder, batch_size=32))
    return {
        "megapixels": slide.dimensions[0] * slide.dimensions[1] / 1e6,
        "tiles": len(grid),
        "seconds": time.perf_counter() - start,
        "peak_mib": (mem.peak - mem.baseline) / 2**20,
        "features_mib": features.nbytes / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tiles", type=int, default=128)
    parser.add_argument("--vit-tiles", type=int, default=32)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    medium = generated_slide(8192, 6144)
    large = generated_slide(16384, 12288)
    rows = [
        (
            "effnet-lite0-imagenet",
            efficiency("effnet-lite0-imagenet", medium, args.tiles, args.batch, device, args.repeats),
        ),
        (
            "h0-mini (random weights)",
            efficiency("h0-mini", medium, args.vit_tiles, min(args.batch, 16), device, args.repeats),
        ),
    ]
    mems = [(p, memory_whole_slide(p, device)) for p in (medium, large)]
    device_name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    lines = [
        "## Embedding pipeline: end to end vs model only",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_embedding.py --device {args.device} "
        f"--tiles {args.tiles} --vit-tiles {args.vit_tiles} --repeats {args.repeats}`  ",
        f"Machine: {machine_line()}; device: {device_name}; torch threads: {torch.get_num_threads()}  ",
        f"Date: {time.strftime('%Y-%m-%d')}",
        "",
        "End to end = tiles read from the slide (pyramid read, resize, threads overlapping the model) "
        "and embedded; model only = the same model on the same tiles already decoded in memory, same "
        "batch size. Medians of the repeats, run alternately.",
        "",
        "| encoder | tiles | end-to-end tiles/s | model-only tiles/s | efficiency |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['tiles']} | {r['e2e']:.1f} | {r['model']:.1f} | {r['ratio']:.2f} |")
    lines += [
        "",
        "Peak resident memory above the start while embedding every tissue tile of a whole slide "
        "(effnet-lite0, batch 32):",
        "",
        "| slide | megapixels | tiles | time (s) | peak RSS increase (MiB) | features (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for p, m in mems:
        lines.append(
            f"| {p.name} | {m['megapixels']:.0f} | {m['tiles']} | {m['seconds']:.0f} | "
            f"{m['peak_mib']:.0f} | {m['features_mib']:.1f} |"
        )
    body = "\n".join(lines)
    write_section(f"embedding-{device.type}", body)
    print(body)


if __name__ == "__main__":
    main()
