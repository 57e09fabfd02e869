"""The README's demo: a sample cohort slide in napari with the plugin's widgets docked.

With ``headless=True`` (the Makefile uses it when there is no display, under Xvfb) the viewer is
shown on the virtual screen, a screenshot and a JSON summary are written to ``out_dir`` and the
viewer closes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .synthetic import CohortConfig, generate_cohort, read_cohort_csv
from .synthetic.cohort import cohort_is_complete


def ensure_cohort(cohort_dir: Path) -> Path:
    """Generate the default cohort in ``cohort_dir`` unless it is already complete."""
    cfg = CohortConfig()
    if not cohort_is_complete(cohort_dir, cfg):
        print(f"generating the synthetic cohort in {cohort_dir} ...", flush=True)
        generate_cohort(cohort_dir, cfg)
    return cohort_dir / "cohort.csv"


def pick_demo_row(rows: list[dict[str, str]]) -> dict[str, str]:
    """A tumour slide from the scanner-independent test split (falls back to any tumour slide)."""
    for row in rows:
        if row["split"] == "test_ood" and row["label"] == "tumour" and row["swapped"] == "0":
            return row
    tumour = [r for r in rows if r["label"] == "tumour"]
    return (tumour or rows)[0]


def _silence_pyqt5_toast() -> None:
    """napari 0.9 announces PyQt5's deprecation in a toast that covers the demo canvas; the
    project pins PyQt5 deliberately (see README), so the demo does not show it."""
    try:
        import napari._qt.qt_main_window as qt_main_window

        qt_main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):
        pass


def run_demo(cohort_dir: Path, out_dir: Path, headless: bool) -> int:
    import napari

    from .io import open_slide
    from .widgets.slide_info import SlideInfoWidget

    _silence_pyqt5_toast()
    csv_path = ensure_cohort(cohort_dir)
    rows = read_cohort_csv(csv_path)
    row = pick_demo_row(rows)
    viewer = napari.Viewer(title="napari-wsirobust demo", show=True)
    slide = open_slide(row["path"])
    for data, kwargs, _ in slide.to_layer_data(name=f"{row['slide_id']} ({row['label']})"):
        viewer.add_image(data, **kwargs)
    info = SlideInfoWidget(viewer)
    viewer.window.add_dock_widget(info, name="Slide info", area="right")
    viewer.window.resize(1600, 1000)
    viewer.scale_bar.visible = True
    viewer.scale_bar.unit = "um"
    if not headless:
        viewer.reset_view()
        napari.run()
        return 0
    from qtpy.QtWidgets import QApplication

    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + 5.0
    fitted = False
    while time.perf_counter() < deadline:  # let the window settle, fit the slide, load tiles
        QApplication.processEvents()
        if not fitted and time.perf_counter() > deadline - 4.0:
            viewer.reset_view()
            fitted = True
        time.sleep(0.05)
    from napari.utils.notifications import notification_manager

    notification_manager.records.clear()
    shot = out_dir / "demo_screenshot.png"
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    summary = {
        "slide": row["path"],
        "slide_id": row["slide_id"],
        "label": row["label"],
        "scanner": row["scanner"],
        "layers": [layer.name for layer in viewer.layers],
        "multiscale": bool(viewer.layers[0].multiscale),
        "scale_um": [float(s) for s in viewer.layers[0].scale],
        "widgets": ["Slide info"],
        "screenshot": str(shot),
        "cohort_csv": str(csv_path),
        "n_cohort_slides": len(rows),
    }
    (out_dir / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    viewer.close()
    print(json.dumps(summary, indent=2))
    return 0
