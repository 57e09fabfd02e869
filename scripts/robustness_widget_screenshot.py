"""Screenshot of the Robustness widget after a what-if and cohort diagnostics (docs/robustness_widget.png).

Generates a scanner-B tumour slide to analyse and a 6-slide cohort on scanners A and C, estimates
the cohort's scanner profiles, runs the scanner-swap what-if on the whole slide with the bundled demo
head and the cohort diagnostics, and saves the window.
Run: ``xvfb-run -a .venv/bin/python scripts/robustness_widget_screenshot.py``.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "robustness_widget.png"


def make_data(folder: Path) -> tuple[Path, Path]:
    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    analysed = folder / "tumour_B.tiff"
    tissue = TissueSpec(seed=61, tumour=True, width=2048, height=1536, tumour_fraction=0.35, atypia=1.0)
    write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), analysed)
    rows = []
    for i in range(6):
        scanner, tumour = "AC"[i % 2], i in (0, 1, 5)
        spec = TissueSpec(seed=70 + i, tumour=tumour, width=1024, height=768, tumour_fraction=0.4, atypia=1.0)
        path = folder / f"c{i}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(spec, scanner), path)
        rows.append([path.name, "tumour" if tumour else "normal", scanner, f"p{i}", "test"])
    with open(folder / "cohort.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(rows)
    return analysed, folder / "cohort.csv"


def main() -> int:
    import napari
    from napari_wsirobust.demo import wait_for
    from napari_wsirobust.widgets.robustness import RobustnessWidget

    analysed, cohort_csv = make_data(Path(tempfile.mkdtemp(prefix="wsirobust-robustness-shot-")))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1920, 1080)
    viewer.open(str(analysed), plugin="napari-wsirobust")
    widget = RobustnessWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right", name="Robustness diagnostics")
    widget._cohort_csv.value = str(cohort_csv)
    widget._scope.value = "whole slide"
    for start in (widget.estimate_profiles, widget.run_whatif, widget.run_cohort):
        if start() is None or not wait_for(lambda: not widget.running, 900):
            print(f"{start.__name__} did not finish: {widget._status.value}")
            return 1
    viewer.reset_view()
    wait_for(lambda: False, 2.0)
    bar = widget._scroll.verticalScrollBar()  # the results, at the bottom of the dock
    bar.setValue(bar.maximum())
    wait_for(lambda: False, 0.5)
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(widget._spread.value)
    print(f"wrote {OUT}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
