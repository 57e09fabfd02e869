"""A fuzz corpus of damaged, truncated and forged slides: each variant reads partially (the bad
tiles reported or left out), reads cleanly where the damage does not matter, or fails with one
clear sentence naming the file; never a crash, a hang or a memory blow-up.

The corpus and its stages live in the ``benchmarks/fuzz`` package (``benchmarks/bench_fuzz.py``
counts the same outcomes); this module loads it by path.
"""

from __future__ import annotations

import csv
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

MAX_SECONDS = 30.0
MAX_RSS_GROWTH_MIB = 1024.0


def _load_fuzz_package() -> ModuleType:
    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz"
    spec = importlib.util.spec_from_file_location(
        "wsirobust_fuzz", folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its modules import each other relatively
    spec.loader.exec_module(module)
    return module


fz = _load_fuzz_package()
CLI_NAMES = [r.name for r in fz.RECIPES if r.cli]
VARIANTS = [
    pytest.param(r.name, marks=pytest.mark.xfail(reason=r.known_issue, strict=False))
    if r.known_issue
    else r.name
    for r in fz.RECIPES
]


@pytest.fixture(scope="module")
def corpus(
    shared_slides: Path, tumour_slide: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Every variant, written once for this module."""
    sources = fz.Sources.from_folders(shared_slides, tumour_slide)
    return fz.build_corpus(tmp_path_factory.mktemp("fuzz"), sources)


def _variant(corpus: dict[str, Any], name: str) -> Any:
    variant = corpus[name]
    if variant.recipe.needs_non_root and fz.is_root():
        pytest.skip("running as root, which can read a chmod 000 file")
    return variant


def test_the_corpus_is_large_enough() -> None:
    assert len(fz.RECIPES) >= 30
    assert len(set(fz.RECIPE_NAMES)) == len(fz.RECIPES)


@pytest.mark.parametrize("name", VARIANTS)
def test_variant_reads_partially_or_fails_clearly(corpus: dict[str, Any], name: str) -> None:
    variant = _variant(corpus, name)
    out = fz.run_variant(variant.path)
    detail = f"{name} ({variant.recipe.note}): {out.summary()}\n{out.traceback or ''}"
    assert not out.problems, f"{detail}\nproblems: {out.problems}"
    assert out.kind in variant.recipe.expect, f"{detail}\nexpected one of {sorted(variant.recipe.expect)}"
    assert out.seconds < MAX_SECONDS, detail
    assert out.rss_growth_mib < MAX_RSS_GROWTH_MIB, detail
    if out.kind == fz.PARTIAL:
        assert out.damaged, f"{detail}: tiles were excluded but slide.damaged_tiles is empty"
        assert any(w.startswith("DamagedTileWarning") for w in out.warnings), detail


def test_a_hang_is_reported_not_waited_for() -> None:
    import threading

    release = threading.Event()
    out = fz.guarded(lambda: release.wait(5) and fz.Outcome(), timeout=0.2)
    release.set()
    assert out.kind == fz.HANG and out.problems


def _predictions(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
@pytest.mark.parametrize("name", CLI_NAMES)
def test_command_line_on_a_partly_damaged_slide(corpus: dict[str, Any], name: str, tmp_path: Path) -> None:
    """``extract`` finishes with a warning line about the damage; ``predict`` too, or refuses the
    slide in one sentence naming it when too many of its tiles are unreadable; never exit 3 or a
    traceback."""
    variant = _variant(corpus, name)
    extract, predict = (fz.run_cli(args) for args in fz.cli_commands(variant.path, tmp_path))
    for run in (extract, predict):
        problems = fz.cli_problems(run, variant.path.name, expect_warning=True)
        assert not problems, f"{name}: wsirobust {run.args[0]} -> {run.code}: {problems}\n{run.text}"
        assert run.seconds < 2 * MAX_SECONDS, f"{name}: wsirobust {run.args[0]} took {run.seconds:.0f} s"
    assert extract.code == 0, extract.text
    if predict.code == 0:
        assert _predictions(tmp_path / "predictions.csv")


@pytest.mark.slow
def test_predict_on_a_slide_with_a_few_excluded_tiles_gives_a_probability(
    corpus: dict[str, Any], tmp_path: Path
) -> None:
    """One damaged file tile in the tissue (a few analysis tiles left out): predicted from the rest."""
    variant = _variant(corpus, "svs-centre-tile-zeros")
    run = fz.run_cli(fz.cli_commands(variant.path, tmp_path)[1])
    assert run.code == 0, run.text
    (row,) = _predictions(tmp_path / "predictions.csv")
    assert all(math.isfinite(float(v)) for k, v in row.items() if k.startswith("p_")), row
