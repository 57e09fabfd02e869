"""GPU tile path benchmark: end-to-end tiles/s from whole generated slides versus model-only tiles/s
on the same tiles, for the default encoder and the H0-mini architecture (random weights, bf16).

End to end = ``embed_tiles`` on every tissue tile of the slide: JPEG file tiles decoded in batches on
the device (nvJPEG), windows assembled and resized there, normalised, embedded (the default path on
CUDA; ``--path host`` measures the CPU reader instead). Model only = the same tiles already decoded
on the device, timing ``normalise`` and the encoder alone. Also reported: peak GPU memory during the
end-to-end run, the device, the share of tiles made on the device and the largest difference the
device JPEG decoder showed against the CPU decoder (a level whose difference exceeds
``--decode-tolerance`` is read on the CPU, which shows up as a low device share).

Target (H100/H200): the H0-mini architecture at >= 2,000 tiles/s end to end and >= 0.85 of its
model-only throughput.

Run on a GPU machine: ``python benchmarks/bench_gpu.py`` (generates 10000x8000 and 20000x15000
slides into benchmarks/_work, in parallel, if they are not there; the whole run is sized to stay under
8 minutes on an H200 with 16 cores). ``--smoke`` runs a tiny slide and a few tiles on the CPU, forcing
the device path, to check the script itself. Writes JSON (``--out``, default
benchmarks/_work/bench_gpu.json) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from napari_wsirobust.encoders import create_encoder
from napari_wsirobust.features import (
    DeviceReadStats,
    DeviceTileReader,
    default_readers,
    embed_tiles,
    encode_normalised,
    run_to_completion,
)
from napari_wsirobust.io import open_slide
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide
from napari_wsirobust.tiling import Scope, TileGrid, TilingConfig, detect_tissue, make_tile_grid

WORK = Path(__file__).resolve().parent / "_work"
ENCODERS = {
    "effnet-lite0-imagenet": "effnet-lite0 (random weights)",
    "h0-mini": "H0-mini arch (random weights)",
}
SIZES = ((10000, 8000), (20000, 15000))
SMOKE_SIZE = (1024, 768)


def _generate(size: tuple[int, int]) -> str:
    width, height = size
    path = WORK / f"gpu_synthetic_{width}x{height}.tiff"
    if not path.exists():
        spec = SyntheticSlideSpec.make(TissueSpec(seed=77, tumour=True, width=width, height=height), "B")
        write_synthetic_slide(spec, path)
    return str(path)


def generated_slides(sizes: tuple[tuple[int, int], ...]) -> list[Path]:
    """The benchmark slides, generated side by side in processes where missing."""
    WORK.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=len(sizes)) as pool:
        paths = [Path(p) for p in pool.map(_generate, sizes)]
    print(f"slides ready in {time.perf_counter() - start:.0f} s", flush=True)
    return paths


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def predecoded(slide: Any, grid: TileGrid, encoder: Any, device: torch.device, batch: int) -> torch.Tensor:
    """Every tile of ``grid`` as (N, S, S, 3) uint8 on ``device`` (the model-only input)."""
    reader = DeviceTileReader(slide, grid, encoder, device)
    parts = [
        reader.read_tiles(np.arange(i, min(i + batch, len(grid))))[0] for i in range(0, len(grid), batch)
    ]
    return torch.cat(parts)


def model_only(encoder: Any, tiles: torch.Tensor, device: torch.device, batch: int) -> float:
    """Tiles/s of normalise + encoder on device-resident tiles."""
    _sync(device)
    start = time.perf_counter()
    for i in range(0, len(tiles), batch):
        encode_normalised(encoder, encoder.normalise(tiles[i : i + batch]), device, encoder.spec.is_cnn)
    _sync(device)
    return len(tiles) / (time.perf_counter() - start)


def end_to_end(slide: Any, grid: TileGrid, encoder: Any, device: torch.device, args: argparse.Namespace):
    """(tiles/s, stats) of one embed_tiles run over the grid."""
    stats = DeviceReadStats()
    _sync(device)
    start = time.perf_counter()
    run_to_completion(
        embed_tiles(
            slide,
            grid,
            encoder,
            batch_size=args.batch,
            readers=args.readers,
            device=device,
            decode_on_device={"auto": None, "device": True, "host": False}[args.path],
            decode_tolerance=args.decode_tolerance,
            device_stats=stats,
            compile_model=args.compile,
        )
    )
    _sync(device)
    return len(grid) / (time.perf_counter() - start), stats


def measure(name: str, path: Path, device: torch.device, args: argparse.Namespace) -> dict[str, Any]:
    encoder = create_encoder(name, random_init=True, device=device)
    slide = open_slide(path)
    grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), detect_tissue(slide))
    if args.max_tiles:
        grid = grid.subset(np.arange(min(args.max_tiles, len(grid))))
    tiles = predecoded(slide, grid, encoder, device, args.batch)
    model = torch.compile(encoder, dynamic=False) if args.compile and not encoder.spec.is_cnn else encoder
    model_only(model, tiles, device, args.batch)  # warm-up (and compilation)
    end_to_end(slide, grid, encoder, device, args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    e2e, alone, stats = [], [], DeviceReadStats()
    for r in range(args.repeats):  # alternate the order so neither always runs on a warmer machine
        for kind in ("e2e", "model") if r % 2 == 0 else ("model", "e2e"):
            if kind == "e2e":
                rate, stats = end_to_end(slide, grid, encoder, device, args)
                e2e.append(rate)
            else:
                alone.append(model_only(model, tiles, device, args.batch))
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    made = stats.device_tiles + stats.host_tiles
    result = {
        "encoder": name,
        "slide": path.name,
        "megapixels": slide.dimensions[0] * slide.dimensions[1] / 1e6,
        "tiles": len(grid),
        "e2e_tiles_per_s": statistics.median(e2e),
        "model_only_tiles_per_s": statistics.median(alone),
        "ratio": statistics.median(e2e) / statistics.median(alone),
        "peak_gpu_mib": peak,
        "device_tile_share": stats.device_tiles / made if made else 0.0,
        "decode_calls": stats.decode_calls,
        "file_tiles_decoded_per_tile": stats.file_tiles_decoded / max(1, stats.device_tiles),
        "decoder_max_diff": stats.level_check,
    }
    print(json.dumps(result), flush=True)
    return result


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| encoder | slide | tiles | end-to-end tiles/s | model-only tiles/s | e2e / model | peak GPU MiB "
        "| on device | decoder diff |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        peak = "-" if r["peak_gpu_mib"] is None else f"{r['peak_gpu_mib']:.0f}"
        diff = ", ".join(f"L{k}: {v}" for k, v in r["decoder_max_diff"].items()) or "-"
        lines.append(
            f"| {ENCODERS[r['encoder']]} | {r['slide']} | {r['tiles']} | {r['e2e_tiles_per_s']:.1f} | "
            f"{r['model_only_tiles_per_s']:.1f} | {r['ratio']:.2f} | {peak} | "
            f"{r['device_tile_share']:.0%} | {diff} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--smoke", action="store_true", help="tiny slide, few tiles, CPU is fine")
    parser.add_argument("--batch", type=int, default=None, help="default 128 (smoke: 4)")
    parser.add_argument("--readers", type=int, default=None, help="reader threads (default: cores, capped)")
    parser.add_argument("--repeats", type=int, default=None, help="default 2 (smoke: 1)")
    parser.add_argument("--max-tiles", type=int, default=None, help="default: all tissue tiles (smoke: 8)")
    parser.add_argument("--path", choices=("auto", "device", "host"), default=None)
    parser.add_argument("--decode-tolerance", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile the ViT encoder")
    parser.add_argument("--encoders", nargs="+", default=list(ENCODERS), choices=list(ENCODERS))
    parser.add_argument("--out", type=Path, default=WORK / "bench_gpu.json")
    args = parser.parse_args()
    args.batch = args.batch or (4 if args.smoke else 128)
    args.repeats = args.repeats or (1 if args.smoke else 2)
    args.max_tiles = args.max_tiles or (8 if args.smoke else None)
    args.path = args.path or ("device" if args.smoke else "auto")
    args.readers = args.readers or default_readers()
    device = torch.device(args.device)
    slides = generated_slides((SMOKE_SIZE,) if args.smoke else SIZES)
    rows = [measure(name, path, device, args) for name in args.encoders for path in slides]
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report = {
        "device": device_name,
        "torch": torch.__version__,
        "batch": args.batch,
        "readers": args.readers,
        "path": args.path,
        "compile": args.compile,
        "smoke": args.smoke,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nDevice: {device_name}; batch {args.batch}; {args.readers} reader threads; path {args.path}\n")
    print(table(rows))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
