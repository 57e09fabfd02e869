"""Progress of the long commands: plain lines on a redirected standard error, tqdm bars on a terminal,
nothing with --quiet; standard output is the same in every case."""

from __future__ import annotations

import csv
import io
import re
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from napari_wsirobust.cli import main
from napari_wsirobust.cli_progress import ProgressDisplay, duration
from napari_wsirobust.features import forget_in_memory
from napari_wsirobust.mil import TrainedHead
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.progress import EMBEDDING, FINISHED, HEAD, PLAN, RENDER, TISSUE, SlideProgress


class TerminalIO(io.StringIO):
    """A stream that says it is a terminal (without a size, as some ptys)."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("progress-cache")


@pytest.fixture(autouse=True)
def nothing_kept_in_memory() -> Iterator[None]:
    """Each test starts as a new process would: slides' tissue maps and plans are kept in memory
    process-wide, so another test of the session may have made them already."""
    forget_in_memory()
    yield
    forget_in_memory()


def _is_prediction_output(out: str, csv_path: Path, name: str) -> bool:
    """``out`` is exactly what ``predict`` prints for one slide with the demo head: the model's notice,
    the slide's line, then the CSV it wrote."""
    with open(csv_path, newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    notice = re.escape(f"notice: {TrainedHead.load(demo_model_dir()).config.notice}") + r"\n"
    line = rf"{row['prediction']:10s} p=[01]\.\d{{3}}  {re.escape(name)}\n"
    expected = notice + line + rf"wrote {re.escape(str(csv_path))} \(1 slide\(s\)\)\n"
    return re.fullmatch(expected, out) is not None


# -- the commands -------------------------------------------------------------------------------------
def test_predict_reports_each_stage_on_stderr_and_quiet_silences_it(
    analysis_slide: Path, cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_csv = tmp_path / "p.csv"
    args = [
        "predict",
        str(demo_model_dir()),
        str(analysis_slide),
        "--out",
        str(out_csv),
        "--cache",
        str(cache),
    ]
    assert main(args) == 0
    captured = capsys.readouterr()
    name = analysis_slide.name
    lines = captured.err.splitlines()
    assert lines[0] == "slides 0/1"
    assert f"{name}: tissue - finding tissue" in lines
    assert f"{name}: plan - estimating the slide's harmonisation plan (to site C)" in lines  # demo harmonises
    embedding = [line for line in lines if line.startswith(f"{name}: embedding ")]
    assert embedding and all(
        re.search(r"embedding \d+/\d+ tiles, [\d.]+ tiles/s, \d+ s left", e) for e in embedding
    )
    assert re.search(r"embedding (\d+)/\1 tiles", embedding[-1])  # the last batch is always shown
    assert f"{name}: head - running the MIL head" in lines
    assert re.fullmatch(rf"slides 1/1: {re.escape(name)} predicted, \d+ s elapsed, 0 s left", lines[-1])
    stages = [line.split(": ")[1].split()[0] for line in lines[1:-1]]
    assert list(dict.fromkeys(stages)) == [TISSUE, PLAN, EMBEDDING, HEAD]  # in the Analyse dock's order
    assert _is_prediction_output(captured.out, out_csv, name)

    assert main([*args, "--quiet"]) == 0  # now from the cache
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == captured.out


def test_extract_reports_stages_and_slides_and_bars_on_a_terminal(
    analysis_slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["extract", str(analysis_slide), "--cache", str(tmp_path / "cache"), "--workers", "0"]
    assert main(args) == 0
    first = capsys.readouterr()
    name = analysis_slide.name
    assert f"{name}: tissue - " in first.err and "plan" not in first.err  # not harmonised
    assert re.search(rf"{re.escape(name)}: embedding (\d+)/\1 tiles, [\d.]+ tiles/s", first.err)
    assert re.fullmatch(
        rf"extracted {re.escape(name)}: \d+ tiles in [\d.]+ s\n1 slide\(s\): 1 extracted\n", first.out
    )

    terminal = TerminalIO()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(args) == 0  # cached now
    bars = terminal.getvalue()
    assert "tiles/s" in bars and "slides: 100%|" in bars and f"{name} embedding: 100%|" in bars
    assert not re.search(r"^slides \d+/\d+", bars, re.M)  # bars, not the plain lines
    assert re.fullmatch(
        rf"cached    {re.escape(name)}: \d+ tiles in [\d.]+ s\n1 slide\(s\): 1 cached\n",
        capsys.readouterr().out,
    )

    terminal.truncate(0)
    assert main([*args, "--quiet"]) == 0
    assert terminal.getvalue() == ""


def test_train_shows_the_embedding_and_keeps_the_epoch_lines(
    cohort_without_mpp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["train", str(cohort_without_mpp), "--out", str(tmp_path / "model"), "--epochs", "2"]
    args += ["--cache", str(tmp_path / "cache"), "--workers", "0", "--harmonise", "none", "--mpp", "0.5"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
    captured = capsys.readouterr()
    assert "slides 0/6" in captured.err and re.search(
        r"^slides 6/6: nompp\d_[AB]\.tiff extracted", captured.err, re.M
    )
    assert re.search(r"nompp0_A\.tiff: embedding \d+/\d+ tiles, [\d.]+ tiles/s", captured.err)
    assert "(scanner-swapped view 1)" in captured.err  # robust-moment trains on scanner-swapped views
    epochs = re.findall(r"^epoch +(\d+)/2 ", captured.out, re.M)
    assert epochs == ["1", "2"] and "embedded nompp5_A.tiff" in captured.out  # standard output as before
    assert not re.search(r"^slides \d", captured.out, re.M) and "tiles/s" not in captured.out


def test_diagnose_and_profiles_report_each_slide(
    cohort_without_mpp: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["diagnose", str(cohort_without_mpp), "--model", str(demo_model_dir()), "--splits", "val"]
    args += ["--out", str(tmp_path), "--cache", str(tmp_path / "cache"), "--mpp", "0.5"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(args) == 0
        diagnosed = capsys.readouterr()
        assert (
            main(["profiles", str(cohort_without_mpp), "--out", str(tmp_path / "p.json"), "--mpp", "0.5"])
            == 0
        )
        profiled = capsys.readouterr()
    assert "nompp4_A.tiff: plan - estimating the slide's harmonisation plan (to site C)" in diagnosed.err
    assert re.search(r"^nompp5_A\.tiff: embedding \d+/\d+ tiles, [\d.]+ tiles/s", diagnosed.err, re.M)
    assert re.search(r"^slides 2/2: nompp5_A\.tiff embedded", diagnosed.err, re.M)
    assert diagnosed.out.startswith("2 slides, 1 sites") and "tiles/s" not in diagnosed.out
    assert "nompp3_B.tiff: profile - estimating the colour profile (B)" in profiled.err
    assert re.search(r"^slides 6/6: nompp5_A\.tiff profiled", profiled.err, re.M)
    assert profiled.out.splitlines()[0] == "profiled nompp0_A.tiff (A)"  # standard output as before


@pytest.mark.parametrize(
    "command",
    [
        "generate-cohort",
        "generate-slide",
        "extract",
        "train",
        "predict",
        "diagnose",
        "profiles",
        "benchmark-shortcut",
    ],
)
def test_every_long_command_takes_quiet(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--quiet" in capsys.readouterr().out


# -- the display ----------------------------------------------------------------------------------------
def _embedding(done: int, total: int, elapsed: float, slide: str = "a.tiff") -> SlideProgress:
    return SlideProgress(slide, EMBEDDING, done, total, elapsed)


def test_plain_lines_on_stage_changes_every_interval_and_at_the_end() -> None:
    stream, clock = io.StringIO(), Clock()
    display = ProgressDisplay(stream=stream, interval_s=5.0, clock=clock)
    display(SlideProgress("", FINISHED, 0, 4))
    display(SlideProgress("a.tiff", TISSUE, message="finding tissue"))
    display(SlideProgress("a.tiff", TISSUE, message="finding tissue"))  # no news: no line
    for done in range(20, 201, 20):  # a batch a second, 20 tiles each
        clock.now += 1.0
        display(_embedding(done, 200, done / 20))
    display(SlideProgress("a.tiff", HEAD, 200, 200, message="running the MIL head"))
    clock.now += 10.0
    display(SlideProgress("a.tiff", FINISHED, 1, 4, 20.0, "extracted"))
    assert stream.getvalue().splitlines() == [
        "slides 0/4",
        "a.tiff: tissue - finding tissue",
        "a.tiff: embedding 20/200 tiles, 20.0 tiles/s, 9 s left",  # the stage starts
        "a.tiff: embedding 120/200 tiles, 20.0 tiles/s, 4 s left",  # 5 s later
        "a.tiff: embedding 200/200 tiles, 20.0 tiles/s, 0 s left",  # the end of the stage
        "a.tiff: head - running the MIL head",
        "slides 1/4: a.tiff extracted, 20 s elapsed, 1 min 00 s left",
    ]


def test_plain_lines_without_a_rate_and_from_worker_processes() -> None:
    stream, clock = io.StringIO(), Clock()
    display = ProgressDisplay(stream=stream, clock=clock)
    display(SlideProgress("", FINISHED, 0, 2))
    display(SlideProgress("b.tiff", EMBEDDING, 50, 50, message="features in the cache"))
    clock.now += 90.0
    display(SlideProgress("c.tiff", FINISHED, 1, 2, message="extracted"))  # per slide only
    display(SlideProgress("b.tiff", FINISHED, 2, 2, message="cached"))
    assert stream.getvalue().splitlines()[1:] == [
        "b.tiff: embedding 50/50 tiles (features in the cache)",
        "slides 1/2: c.tiff extracted, 1 min 30 s elapsed, 1 min 30 s left",
        "slides 2/2: b.tiff cached, 1 min 30 s elapsed, 0 s left",
    ]


def test_quiet_shows_no_progress_but_results(capsys: pytest.CaptureFixture[str]) -> None:
    stream = TerminalIO()
    display = ProgressDisplay(quiet=True, stream=stream)
    display(SlideProgress("", FINISHED, 0, 1))
    display(_embedding(10, 20, 1.0))
    display.echo("extracted a.tiff: 20 tiles in 1.0 s")
    display.echo("warning   a.tiff: 1 of 20 tiles left out", file=sys.stderr)
    display.close()
    assert stream.getvalue() == ""
    captured = capsys.readouterr()
    assert captured.out == "extracted a.tiff: 20 tiles in 1.0 s\n"
    assert captured.err == "warning   a.tiff: 1 of 20 tiles left out\n"


def test_bars_on_a_terminal_with_rate_and_time_left(capsys: pytest.CaptureFixture[str]) -> None:
    stream = TerminalIO()
    before = warnings.showwarning
    with ProgressDisplay(stream=stream) as display:
        display(SlideProgress("", FINISHED, 0, 2))
        display(
            SlideProgress("a.tiff", PLAN, message="estimating the slide's harmonisation plan (to site C)")
        )
        display(_embedding(32, 320, 2.0))
        display(_embedding(320, 320, 20.0))
        display.echo("predicted a.tiff")
        assert warnings.showwarning is not before  # warnings go between the bars
        display(SlideProgress("a.tiff", FINISHED, 1, 2, message="predicted"))
    assert warnings.showwarning is before
    text = stream.getvalue()
    assert "a.tiff plan [00:00, estimating the slide's harmonisation plan (to site C)]" in text
    assert re.search(r"a\.tiff embedding:  10%\|.*\| 32/320 \[00:02<00:18, +16\.00tiles/s\]", text)
    assert "a.tiff embedding: 100%|" in text and "slides:  50%|" in text and "a.tiff predicted]" in text
    assert capsys.readouterr().out == "predicted a.tiff\n"  # the result line untouched, on stdout


def test_a_new_run_starts_a_new_overall_bar() -> None:
    stream = TerminalIO()
    with ProgressDisplay(stream=stream) as display:
        for total in (3, 5):  # e.g. the benchmark: the cohort's slides, then those to embed
            display(SlideProgress("", FINISHED, 0, total))
            display(SlideProgress("x.tiff", FINISHED, 1, total, message="written"))
    text = stream.getvalue()
    assert "1/3 [" in text and "1/5 [" in text


@dataclass(frozen=True)
class DurationCase:
    seconds: float
    text: str


@pytest.mark.parametrize(
    "case",
    [
        DurationCase(0.4, "0 s"),
        DurationCase(59.6, "1 min 00 s"),
        DurationCase(125, "2 min 05 s"),
        DurationCase(7620, "2 h 07 min"),
    ],
    ids=lambda c: c.text,
)
def test_duration_reads_like_a_person_would_say_it(case: DurationCase) -> None:
    assert duration(case.seconds) == case.text


# -- the compute side ---------------------------------------------------------------------------------
def test_generate_cohort_reports_each_slide(small_cohort: Path) -> None:
    from napari_wsirobust.synthetic import CohortConfig, generate_cohort

    records: list[SlideProgress] = []
    generate_cohort(
        small_cohort.parent, CohortConfig(width=512, height=384, workers=1), progress=records.append
    )
    finished = [r for r in records if r.stage == FINISHED]
    n = len(list(csv.DictReader(small_cohort.read_text().splitlines())))
    assert [r.done for r in finished] == list(range(n + 1)) and {r.total for r in finished} == {n}
    assert {r.message for r in finished[1:]} == {"present"}  # all there already: resumed
    assert sum(r.stage == RENDER for r in records) == n


def test_the_command_line_starts_without_torch() -> None:
    """Building the parser (every command does) imports no torch: light commands stay light."""
    import subprocess
    import sys

    code = (
        "import sys; from napari_wsirobust.cli import build_parser; "
        "build_parser().parse_args(['generate-slide', 'x.tiff']); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_unknown_loss_preset_is_refused_with_the_list() -> None:
    from napari_wsirobust.mil import LOSS_PRESETS, resolve_preset

    with pytest.raises(
        ValueError, match="unknown loss configuration 'robust-magic'; choose from auto, "
    ) as info:
        resolve_preset("robust-magic", [])
    assert all(name in str(info.value) for name in LOSS_PRESETS)


def test_generate_slide_reports_the_rows_it_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "one.tiff"
    assert main(["generate-slide", str(out), "--width", "600", "--height", "700"]) == 0
    captured = capsys.readouterr()
    assert "one.tiff: render - laying out the tissue" in captured.err
    assert "one.tiff: render 700/700 rows" in captured.err
    assert captured.out.startswith(f"wrote {out} (600x700")
    assert main(["generate-slide", str(tmp_path / "two.tiff"), "--quiet"]) == 0
    assert capsys.readouterr().err == ""
