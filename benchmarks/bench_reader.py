"""Reader benchmark: random 1024x1024 regions through the plugin's dask levels versus
``tiffslide.read_region`` on the same regions, and peak memory while panning a whole slide.

Run: ``.venv/bin/python benchmarks/bench_reader.py`` (writes the "reader" section of BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import tiffslide

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402
from napari_wsirobust.io import open_slide  # noqa: E402
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / "_work"
REGION = 1024


def generated_slide(width: int, height: int) -> Path:
    path = WORK / f"synthetic_{width}x{height}.tiff"
    if not path.exists():
        start = time.perf_counter()
        spec = SyntheticSlideSpec.make(TissueSpec(seed=77, tumour=True, width=width, height=height), "B")
        write_synthetic_slide(spec, path)
        print(f"generated {path.name} in {time.perf_counter() - start:.0f} s", flush=True)
    return path


def time_regions(path: Path, level: int, n: int, seed: int) -> dict[str, float]:
    """Median seconds per region for both readers, alternating which goes first."""
    slide = open_slide(path)
    reference = tiffslide.TiffSlide(path)
    arr = slide.levels[level]
    h, w = arr.shape[:2]
    size = (min(REGION, w), min(REGION, h))
    ds = reference.level_downsamples[level]
    rng = np.random.default_rng(seed)
    ours, theirs = [], []
    for i in range(n):
        x = int(rng.integers(0, w - size[0] + 1))
        y = int(rng.integers(0, h - size[1] + 1))

        def run_ours(x: int = x, y: int = y) -> None:
            t = time.perf_counter()
            arr[y : y + size[1], x : x + size[0]].compute()
            ours.append(time.perf_counter() - t)

        def run_theirs(x: int = x, y: int = y) -> None:
            t = time.perf_counter()
            reference.read_region((int(x * ds), int(y * ds)), level, size, as_array=True)
            theirs.append(time.perf_counter() - t)

        for fn in (run_ours, run_theirs) if i % 2 == 0 else (run_theirs, run_ours):
            fn()
    med_ours, med_theirs = statistics.median(ours), statistics.median(theirs)
    return {
        "ours_ms": 1e3 * med_ours,
        "tiffslide_ms": 1e3 * med_theirs,
        "ratio": med_ours / med_theirs,
        "size": size,
        "n": n,
    }


class PeakRSS:
    """Samples this process's resident memory every 5 ms in a background thread."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.peak = self.baseline = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def pan_whole_slide(path: Path, viewport: tuple[int, int] = (1920, 1080)) -> dict[str, float]:
    """Raster-pan a screen-sized viewport across all of level 0 (what a user panning at full
    resolution makes the viewer read) and record the peak memory above the starting point."""
    slide = open_slide(path)
    level0 = slide.levels[0]
    h, w = level0.shape[:2]
    vw, vh = viewport
    start = time.perf_counter()
    n = 0
    with PeakRSS() as mem:
        for y in range(0, h, vh // 2):
            for x in range(0, w, vw // 2):
                level0[y : y + vh, x : x + vw].compute()
                n += 1
    return {
        "megapixels": w * h / 1e6,
        "views": n,
        "seconds": time.perf_counter() - start,
        "peak_delta_mib": (mem.peak - mem.baseline) / 2**20,
        "file_mib": path.stat().st_size / 2**20,
        "decoded_mib": w * h * 3 / 2**20,
    }


def per_tile_costs(path: Path, n: int = 200) -> dict[str, float]:
    """Median cost of one native tile three ways: a dask task over the zarr store, a direct zarr
    call, and tifffile's raw read + JPEG decode (where the per-chunk overhead comes from)."""
    import tifffile

    slide = open_slide(path)
    level0, native = slide.levels[0], slide._native[0]
    th, tw = slide.metadata.tile_size
    tiles_x = level0.shape[1] // tw
    out: dict[str, list[float]] = {"dask": [], "zarr": [], "decode": []}
    with tifffile.TiffFile(path) as tif, open(path, "rb") as fh:
        page = tif.pages[0]
        for i in range(n):
            ty, tx = (i * 7) % (level0.shape[0] // th), (i * 13) % tiles_x
            sl = (slice(ty * th, (ty + 1) * th), slice(tx * tw, (tx + 1) * tw))
            t = time.perf_counter()
            level0[sl].compute()
            out["dask"].append(time.perf_counter() - t)
            t = time.perf_counter()
            native[sl]
            out["zarr"].append(time.perf_counter() - t)
            index = ty * tiles_x + tx
            t = time.perf_counter()
            fh.seek(page.dataoffsets[index])
            page.decode(fh.read(page.databytecounts[index]), index, jpegtables=page.jpegtables)
            out["decode"].append(time.perf_counter() - t)
    return {k: 1e3 * statistics.median(v) for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--regions", type=int, default=40)
    parser.add_argument("--large", default="16384x12288", help="large generated slide WxH")
    parser.add_argument("--medium", default="8192x6144", help="medium generated slide WxH")
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data" / "slides"))
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    large = generated_slide(*map(int, args.large.split("x")))
    medium = generated_slide(*map(int, args.medium.split("x")))
    cmu = Path(args.shared) / "cmu-1-small-region.svs"

    rows = []
    if cmu.exists():
        rows.append(
            (
                "cmu-1-small-region.svs (real Aperio, 2220x2967, 1 level)",
                0,
                time_regions(cmu, 0, args.regions, 1),
            )
        )
    large_slide = open_slide(large)
    low = max(i for i in range(large_slide.level_count) if min(large_slide.levels[i].shape[:2]) >= REGION)
    name = f"{large.name} (generated, {args.large})"
    rows.append((name, 0, time_regions(large, 0, args.regions, 2)))
    rows.append((name, low, time_regions(large, low, args.regions, 3)))

    pans = [(p, pan_whole_slide(p)) for p in (medium, large)]
    tile = per_tile_costs(large)

    lines = [
        "## Reader: dask levels vs tiffslide.read_region",
        "",
        f"Command: `.venv/bin/python benchmarks/bench_reader.py --regions {args.regions}`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d')}",
        "",
        "Random regions (same positions for both readers, order alternated), median per region:",
        "",
        "| slide | level | region | n | plugin dask (ms) | tiffslide.read_region (ms) "
        "| ratio dask/tiffslide |",
        "|---|---|---|---|---|---|---|",
    ]
    for slide_name, level, r in rows:
        lines.append(
            f"| {slide_name} | {level} | {r['size'][0]}x{r['size'][1]} | {r['n']} | "
            f"{r['ours_ms']:.1f} | {r['tiffslide_ms']:.1f} | {r['ratio']:.2f} |"
        )
    lines += [
        "",
        f"Why the ratio is above 1: reading one native 256x256 tile (median of 200) costs "
        f"{tile['dask']:.2f} ms as a one-chunk dask compute (graph construction and scheduling "
        f"included), {tile['zarr']:.2f} ms as a direct zarr call and "
        f"tifffile's raw read + JPEG decode {tile['decode']:.2f} ms. `read_region` makes one zarr "
        "call per region; the dask levels make one call per tile, which is what keeps reads "
        "tile-exact (a one-tile view decodes one tile, tested) but adds per-chunk overhead. "
        "Grouping 2x2 tiles per chunk cut the region time but made a one-tile view decode four "
        "tiles, so the levels keep native chunks.",
    ]
    lines += [
        "",
        "Panning a 1920x1080 viewport over all of level 0 (half-viewport steps), peak resident "
        "memory above the start of the pan:",
        "",
        "| slide | megapixels | decoded size (MiB) | views read | time (s) | peak RSS increase (MiB) |",
        "|---|---|---|---|---|---|",
    ]
    for p, r in pans:
        lines.append(
            f"| {p.name} | {r['megapixels']:.0f} | {r['decoded_mib']:.0f} | {r['views']} | "
            f"{r['seconds']:.1f} | {r['peak_delta_mib']:.0f} |"
        )
    ratio = pans[1][1]["peak_delta_mib"] / max(pans[0][1]["peak_delta_mib"], 1e-9)
    size_ratio = pans[1][1]["megapixels"] / pans[0][1]["megapixels"]
    lines += [
        "",
        f"The large slide is {size_ratio:.1f}x the medium one; its panning peak is "
        f"{ratio:.2f}x the medium one's: memory is bounded by the viewport and the chunks it "
        "touches, not by the slide.",
    ]
    body = "\n".join(lines)
    write_section("reader", body)
    print(body)


if __name__ == "__main__":
    main()
