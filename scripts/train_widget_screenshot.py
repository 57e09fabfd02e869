"""Screenshot of the Train widget after a short training run, for the README (docs/train_widget.png).

Generates 12 small synthetic slides (two scanners), opens one, labels it from a drawn "tumour"
rectangle, loads the others from a cohort CSV, trains the default (robust-align) head for 60 epochs,
and saves the whole window. Run: ``xvfb-run -a .venv/bin/python scripts/train_widget_screenshot.py``.
"""

from __future__ import annotations

import csv
import sys
import tempfile
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "docs" / "train_widget.png"


def make_cohort(folder: Path) -> tuple[Path, Path]:
    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    rows = []
    for i in range(12):
        tumour, scanner = i % 2 == 0, "AB"[(i // 2) % 2]
        tissue = TissueSpec(seed=300 + i, tumour=tumour, width=1024, height=768, tumour_fraction=0.4)
        path = folder / f"slide{i:02d}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), path)
        rows.append(
            [path.name, "tumour" if tumour else "normal", scanner, f"p{i}", "train" if i < 8 else "val"]
        )
    with open(folder / "cohort.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(rows[1:])
    return folder / rows[0][0], folder / "cohort.csv"


def main() -> int:
    import napari
    from napari_wsirobust.demo import wait_for
    from napari_wsirobust.widgets.train import TrainWidget

    work = Path(tempfile.mkdtemp(prefix="wsirobust-train-shot-"))
    opened, cohort_csv = make_cohort(work)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1920, 1080)
    (slide,) = viewer.open(str(opened), plugin="napari-wsirobust")
    rect = np.array([[0.0, 0.0], [0.0, 512.0], [192.0, 512.0], [192.0, 0.0]])
    shapes = viewer.add_shapes(
        [rect],
        shape_type="rectangle",
        name="tumour",
        edge_color="red",
        face_color="transparent",
        units=slide.units,  # as napari's own "new shapes" button does: world coordinates are µm
    )
    widget = TrainWidget(viewer)
    viewer.window.add_dock_widget(widget, area="right", name="Train MIL head")
    widget.add_open_slides()
    widget.load_cohort_csv(cohort_csv)
    widget._ann_layer.value, widget._ann_slide.value = shapes, slide
    widget.use_annotations()
    split = list(widget._table.column_headers).index("split")
    widget._table.data[0, split] = "train"
    widget._table.data[0, list(widget._table.column_headers).index("site")] = "A"
    widget._epochs.value = 60
    widget._model_dir.value = str(work / "head")
    if widget.train() is None or not wait_for(lambda: not widget.running, 600):
        print("training did not finish")
        return 1
    viewer.reset_view()
    bar = widget._scroll.verticalScrollBar()  # the results, at the bottom of the dock
    bar.setValue(bar.maximum())
    wait_for(lambda: False, 1.0)
    OUT.parent.mkdir(exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(widget._status.value)
    print(f"wrote {OUT}")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
