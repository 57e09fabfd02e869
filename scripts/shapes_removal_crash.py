"""Reproduce napari's crash after a Shapes layer is removed, and check the plugin's guard against it.

Run under a display (``xvfb-run -a .venv/bin/python scripts/shapes_removal_crash.py [--guard]``): it
shows a viewer with an image, then ``--cycles`` times adds a Shapes layer (8 rectangles with text
labels, like the top-tiles layer), paints, removes it and paints, and finally adds another image.
Without ``--guard`` the process dies with a segmentation fault at the second cycle on Mesa (exit
status -11 from a parent process); with it, it prints the resident memory after each cycle and
"survived". ``--layer points`` cycles a Points layer without text instead (no crash, no guard needed:
the memory baseline). ``benchmarks/bench_layer_removal.py`` runs it. See
:mod:`napari_wsirobust._vispy.gl_guard`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from qtpy.QtWidgets import QApplication

import napari
from napari_wsirobust._vispy import gl_guard


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)


def resident_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * 4096 / 2**20


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--guard", action="store_true", help="install napari_wsirobust's guard first")
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument(
        "--layer", choices=("shapes", "points"), default="shapes", help="points: a Points layer without text"
    )
    args = parser.parse_args()
    if args.guard:
        gl_guard.guard_gl_program_deletion()
    viewer = napari.Viewer(show=True)
    viewer.add_image(np.random.default_rng(0).random((512, 512)))
    spin(1.0)
    boxes = [np.array([[100.0, 100], [100, 300], [300, 300], [300, 100]]) + 50 * i for i in range(8)]
    for cycle in range(1, args.cycles + 1):
        if args.layer == "points":
            layer = viewer.add_points(np.array([box.mean(axis=0) for box in boxes]))
        else:
            layer = viewer.add_shapes(
                boxes,
                shape_type="rectangle",
                edge_color="#00ff66",
                face_color="transparent",
                features={"rank": list(range(1, 9))},
                text={"string": "{rank}", "size": 12, "color": "#00ff66"},
            )
        spin(0.3)
        viewer.layers.remove(layer)
        spin(0.3)
        held = f", {gl_guard.kept_programs()} GL programs left undeleted" if args.guard else ""
        print(f"cycle {cycle}: resident {resident_mib():.1f} MiB{held}", flush=True)
    viewer.add_image(np.random.default_rng(1).random((64, 64)), name="after")
    spin(0.5)
    print("survived", flush=True)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
