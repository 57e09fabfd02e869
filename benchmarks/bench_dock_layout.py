"""How much of the window each dock leaves to the slide. Opens a slide, fills the Analyse, Train and
Robustness docks with a real run each (``--empty``: before any run), then shows each dock alone and
beside Slide info at 1920x1080 and 1366x768 and writes the canvas width as a share of the window's,
with a screenshot of each (``<out>/<size>_<docks>.png``, ``<out>/layout.json``).

Run: ``xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/bench_dock_layout.py``; writes the
"dock-layout" section of BENCHMARKS.md. Exit status 1 when a dock at 1920x1080 leaves the canvas less
than half the window's width, or a window ends up taller than asked for (a dock that does not fit).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "scripts")]  # the report writer; the screenshot scripts' data
from _report import machine_line, write_section  # noqa: E402

SIZES = ((1920, 1080), (1366, 768))
DOCKS = ("Analyse", "Train", "Robustness")
MIN_SHARE_AT_1920 = 0.5


def measure(viewer, shown: list[str], widgets: dict[str, object], size: tuple[int, int], shot: Path) -> dict:
    """Dock only the widgets named in ``shown`` (as a user opening them would), resize the window, and
    measure the canvas."""
    from napari_wsirobust.demo import wait_for

    for dock in list(viewer.window._wrapped_dock_widgets.values()):
        viewer.window.remove_dock_widget(dock)
    wait_for(lambda: False, 0.3)
    viewer.window.resize(*size)
    for name in shown:
        viewer.window.add_dock_widget(widgets[name], name=name, area="right")
    wait_for(lambda: False, 1.0)
    canvas = viewer.window._qt_viewer.canvas.native.width()
    window = viewer.window._qt_window.width()
    viewer.screenshot(str(shot), canvas_only=False, flash=False)
    return {
        "window": f"{size[0]}x{size[1]}",
        "window_px": [window, viewer.window._qt_window.height()],
        "docks": shown,
        "canvas_px": canvas,
        "canvas_share": round(canvas / window, 3),
        "screenshot": str(shot),
    }


def run_jobs(widgets: dict[str, object], robustness_csv: Path, train_csv: Path) -> None:
    """Fill every dock as a user would: an analysis, a what-if and cohort diagnostics, a training run."""
    from napari_wsirobust.demo import wait_for

    analyse, robustness, train = widgets["Analyse"], widgets["Robustness"], widgets["Train"]
    analyse._scope.value = robustness._scope.value = "whole slide"
    robustness._cohort_csv.value = str(robustness_csv)
    train.load_cohort_csv(train_csv)
    train._epochs.value = 12
    train._model_dir.value = str(train_csv.parent / "head")
    jobs = (
        analyse.run,
        robustness.estimate_profiles,
        robustness.run_whatif,
        robustness.run_cohort,
        train.train,
    )
    for start in jobs:
        widget = start.__self__
        if start() is None or not wait_for(lambda w=widget: not w.running, 900):
            raise SystemExit(f"{start.__name__} did not finish: {widget._status.value}")
        print(f"{start.__name__}: {widget._status.value}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        default=str(HERE / "_work" / "dock_layout"),
        help="folder for the screenshots and layout.json",
    )
    parser.add_argument("--empty", action="store_true", help="measure the docks before any run")
    args = parser.parse_args(argv)
    from robustness_widget_screenshot import make_data
    from train_widget_screenshot import make_cohort

    import napari
    from napari_wsirobust.demo import wait_for
    from napari_wsirobust.widgets import AnalyseWidget, RobustnessWidget, SlideInfoWidget, TrainWidget

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    analysed, robustness_csv = make_data(Path(tempfile.mkdtemp(prefix="wsirobust-layout-r-")))
    _, train_csv = make_cohort(Path(tempfile.mkdtemp(prefix="wsirobust-layout-t-")))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(*SIZES[0])
    viewer.open(str(analysed), plugin="napari-wsirobust")
    widgets = {
        "Slide info": SlideInfoWidget(viewer),
        "Analyse": AnalyseWidget(viewer),
        "Train": TrainWidget(viewer),
        "Robustness": RobustnessWidget(viewer),
    }
    for name, widget in widgets.items():
        viewer.window.add_dock_widget(widget, name=name, area="right")
    if not args.empty:
        run_jobs(widgets, robustness_csv, train_csv)
    viewer.reset_view()
    wait_for(lambda: False, 1.0)
    rows = []
    for size in SIZES:
        for name in DOCKS:
            for shown in ([name], ["Slide info", name]):
                tag = f"{size[0]}x{size[1]}_{'+'.join(s.split()[0].lower() for s in shown)}"
                rows.append(measure(viewer, shown, widgets, size, out / f"{tag}.png"))
                print(
                    f"{tag:32s} canvas {rows[-1]['canvas_share']:.2f} of the window width "
                    f"(window {rows[-1]['window_px'][0]}x{rows[-1]['window_px'][1]})",
                    flush=True,
                )
    (out / "layout.json").write_text(json.dumps(rows, indent=2))
    viewer.close()
    if not args.empty:
        write_section("dock-layout", report(rows))
    narrow = [r for r in rows if r["window"] == "1920x1080" and r["canvas_share"] < MIN_SHARE_AT_1920]
    grown = [r for r in rows if r["window_px"][1] > int(r["window"].split("x")[1])]
    for r in narrow:
        print(f"too narrow: {r['docks']} leave {r['canvas_share']:.2f} of the window", file=sys.stderr)
    for r in grown:
        print(f"window grew: {r['docks']} made it {r['window_px']} for {r['window']}", file=sys.stderr)
    return 1 if narrow or grown else 0


def report(rows: list[dict]) -> str:
    """The BENCHMARKS.md section: one row per window size and docks shown."""
    lines = [
        "## Dock layout",
        "",
        f'`xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python benchmarks/bench_dock_layout.py` on '
        f"{machine_line()}, Xvfb. Each dock filled by a real run first (a whole-slide analysis; scanner "
        "profiles, a what-if and cohort diagnostics; 12 epochs of training on 11 slides), then docked "
        "alone or below Slide info, as a user opens them, in a window of each size. Canvas share: the "
        f"canvas width over the window width (target at 1920x1080: at least {MIN_SHARE_AT_1920}); window: "
        "its size once laid out (a dock that does not fit would make it taller).",
        "",
        "| window asked | docks | canvas px | canvas share | window after layout |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['window']} | {' + '.join(r['docks'])} | {r['canvas_px']} | {r['canvas_share']:.2f} | "
            f"{r['window_px'][0]}x{r['window_px'][1]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
