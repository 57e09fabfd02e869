"""Removing layers on Mesa OpenGL: the crash without the plugin's guard, and the guard's memory cost.

Run: ``xvfb-run -a .venv/bin/python benchmarks/bench_layer_removal.py`` (writes the "layer-removal"
section of BENCHMARKS.md). Each condition runs ``scripts/shapes_removal_crash.py`` in a fresh process,
twice, alternated: a Shapes layer with text (like the top tiles) without the guard (3 cycles: does
the process survive?), the same with the guard (``--cycles`` add/paint/remove cycles: resident memory
growth per cycle), and a Points layer without text, unguarded (its removal does not crash: napari's
own growth per cycle, the baseline).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_line, write_section  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "shapes_removal_crash.py"
CYCLE = re.compile(r"cycle (\d+): resident ([\d.]+) MiB")


def run(arguments: list[str]) -> tuple[int, list[float], bool]:
    """Exit status, resident MiB after each cycle, and whether the script printed "survived"."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *arguments], capture_output=True, text=True, timeout=900
    )
    resident = [float(m.group(2)) for m in CYCLE.finditer(done.stdout)]
    return done.returncode, resident, "survived" in done.stdout


def growth_per_cycle(resident: list[float]) -> float:
    """Least-squares slope of resident MiB over cycles 2..N (the first cycle also loads code)."""
    values = np.asarray(resident[1:], dtype=np.float64)
    return float(np.polyfit(np.arange(len(values)), values, 1)[0]) if len(values) >= 2 else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    conditions = {
        "Shapes with text, no guard": ["--cycles", "3"],
        "Shapes with text, guard": ["--guard", "--cycles", str(args.cycles)],
        "Points without text, no guard": ["--layer", "points", "--cycles", str(args.cycles)],
    }
    rows = {name: [] for name in conditions}
    for repeat in range(args.repeats):
        for name, arguments in conditions.items():
            status, resident, survived = run(arguments)
            rows[name].append((status, resident, survived))
            summary = f"exit {status}, {len(resident)} cycles, survived {survived}"
            print(f"{name} #{repeat + 1}: {summary}", flush=True)
    lines = [
        "| condition | exit status per process | cycles completed | survived | resident MiB after cycle 1 "
        "| growth per cycle (MiB, slope over cycles 2..N) |",
        "|---|---|---|---|---|---|",
    ]
    for name, results in rows.items():
        statuses = ", ".join(str(status) for status, _, _ in results)
        cycles = ", ".join(str(len(resident)) for _, resident, _ in results)
        survived = ", ".join("yes" if ok else "no" for _, _, ok in results)
        first = ", ".join(f"{resident[0]:.0f}" if resident else "-" for _, resident, _ in results)
        slopes = [growth_per_cycle(resident) for _, resident, _ in results if len(resident) > 3]
        slope = ", ".join(f"{s:.2f}" for s in slopes) or "-"
        lines.append(f"| {name} | {statuses} | {cycles} | {survived} | {first} | {slope} |")
    body = (
        "## Removing layers on Mesa OpenGL\n\n"
        f"`xvfb-run -a .venv/bin/python benchmarks/bench_layer_removal.py` on {machine_line()}, "
        "Xvfb + Mesa llvmpipe, napari 0.9.2, vispy 0.17. Each row: "
        f"{args.repeats} fresh processes of `scripts/shapes_removal_crash.py` (alternated with the other "
        "rows): a viewer showing a 512x512 image; each cycle adds a layer (8 rectangles with rank text, "
        "as the top tiles; or 8 points without text), paints, removes it, paints; then an image is added. "
        "Exit status -11 is a segmentation fault. The guard (`_vispy/gl_guard.py`) stops vispy deleting "
        "GL programs on Mesa; its cost is the difference in growth per cycle against the Points row, "
        "whose removal needs no guard.\n\n" + "\n".join(lines) + "\n"
    )
    write_section("layer-removal", body)
    print(body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
