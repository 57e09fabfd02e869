"""Fuzz benchmark: every variant of the damaged-slide corpus (the ``fuzz`` package) through opening,
viewing, the napari reader and tiling, a few through ``wsirobust extract`` and ``predict``; counts
the outcomes, the slowest variant and the largest memory growth.

Run: ``.venv/bin/python benchmarks/bench_fuzz.py`` (writes the "fuzz" section of BENCHMARKS.md;
exit status 1 when a variant crashes, hangs, gives an unclear message or an unexpected outcome).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz as fz  # noqa: E402
from _report import machine_line, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _kind_of(error: str | None) -> str:
    return error.split(":", 1)[0] if error else ""


def run_corpus(corpus: dict[str, fz.Variant]) -> list[tuple[fz.Variant, fz.Outcome | None]]:
    """Each variant's outcome (None: skipped, e.g. chmod 000 when running as root)."""
    rows: list[tuple[fz.Variant, fz.Outcome | None]] = []
    for variant in corpus.values():
        if variant.recipe.needs_non_root and fz.is_root():
            rows.append((variant, None))
            continue
        out = fz.run_variant(variant.path)
        rows.append((variant, out))
        print(f"{variant.recipe.name:28s} {out.seconds:6.2f} s  {out.summary()}", flush=True)
    return rows


def run_cli_subset(corpus: dict[str, fz.Variant], work: Path) -> list[tuple[str, fz.CliRun, list[str]]]:
    runs = []
    for variant in corpus.values():
        if not variant.recipe.cli:
            continue
        folder = work / "cli" / variant.recipe.name
        folder.mkdir(parents=True)
        for args in fz.cli_commands(variant.path, folder):
            run = fz.run_cli(args)
            problems = fz.cli_problems(run, variant.path.name, expect_warning=True)
            nan = args[0] == "predict" and run.code == 0 and "p=nan" in run.stdout
            runs.append((variant.recipe.name, run, problems + (["p=nan"] if nan else [])))
            print(f"cli {args[0]:8s} {variant.recipe.name}: exit {run.code} {problems}", flush=True)
    return runs


def _unexpected(variant: fz.Variant, out: fz.Outcome) -> list[str]:
    issues = list(out.problems)
    if out.kind not in variant.recipe.expect:
        issues.append(f"{out.kind}, expected {'/'.join(sorted(variant.recipe.expect))}")
    if out.seconds >= 30:
        issues.append(f"{out.seconds:.0f} s")
    if out.rss_growth_mib >= 1024:
        issues.append(f"+{out.rss_growth_mib:.0f} MiB")
    return issues


def _last_line(run: fz.CliRun) -> str:
    """The command's last line that is not a Python warning's source line."""
    lines = [line for line in run.text.splitlines() if line.strip() and not line.startswith(" ")]
    return lines[-1].replace("|", "/")[:150] if lines else ""


def _cli_lines(cli: list[tuple[str, fz.CliRun, list[str]]]) -> list[str]:
    out = [
        "",
        f"Command line on {len({n for n, _, _ in cli})} partly damaged variants (`extract --workers 0`, then "
        "`predict` with the bundled demo head; exit 1 is a slide refused in one sentence):",
        "",
        "| variant | command | exit | s | last line | problems |",
        "|---|---|---|---|---|---|",
    ]
    for name, run, problems in cli:
        out.append(
            f"| {name} | {run.args[0]} | {run.code} | {run.seconds:.1f} | {_last_line(run)} | "
            f"{', '.join(problems) or 'none'} |"
        )
    return out


def report(
    rows: list[tuple[fz.Variant, fz.Outcome | None]], cli: list[tuple[str, fz.CliRun, list[str]]]
) -> str:
    done = [(v, o) for v, o in rows if o is not None]
    kinds = Counter(o.kind for _, o in done)
    errors = Counter(_kind_of(o.error) for _, o in done if o.kind == fz.ERROR)
    refusals = Counter(_kind_of(o.refused) for _, o in done if o.refused)
    slowest = max(done, key=lambda vo: vo[1].seconds)
    hungriest = max(done, key=lambda vo: vo[1].rss_growth_mib)
    unexpected = [v.recipe.name for v, o in done if _unexpected(v, o) and not v.recipe.known_issue]
    known = [(v, o) for v, o in done if v.recipe.known_issue]
    lines = [
        "## Fuzz corpus: damaged, truncated and forged slides",
        "",
        "Command: `.venv/bin/python benchmarks/bench_fuzz.py`  ",
        f"Machine: {machine_line()}  ",
        f"Date: {time.strftime('%Y-%m-%d')}",
        "",
        "Each variant (built by `benchmarks/fuzz/corpus.py` from the shared slides and the generated "
        "1024x768 pyramid; the same corpus as `tests/io/test_fuzz_corpus.py`) is opened, viewed (smallest "
        "level and every lower level in full, three 512-px level-0 regions), opened again through the "
        "npe2 reader, and tiled (tissue mask, grid at 0.5 µm/px with 10 % tissue, up to 20 strict tile "
        "reads; a slide without MPP is refused by the grid before a tissue mask is made, which would cost "
        "about 10 s at full resolution). "
        "Time and peak resident memory growth are per variant, all stages together.",
        "",
        "| outcome | count |",
        "|---|---|",
        f"| variants | {len(rows)} |",
        f"| partial reads, damaged tiles reported | {kinds[fz.PARTIAL]} |",
        f"| clean reads (damage in bytes that do not matter, or undetectable) | {kinds[fz.CLEAN]} |",
        *[f"| clear errors: {k} | {n} |" for k, n in sorted(errors.items())],
        f"| crashes (any other exception, unclear message) | {kinds[fz.CRASH]} |",
        f"| hangs (> {fz.TIMEOUT_S:.0f} s) | {kinds[fz.HANG]} |",
        f"| skipped (chmod 000 when running as root) | {len(rows) - len(done)} |",
        f"| outcome other than the recipe's expectation | {len(unexpected)} |",
        f"| known issues (expected to fail, see below) | {len(known)} |",
        f"| slowest variant (s) | {slowest[1].seconds:.2f} ({slowest[0].recipe.name}) |",
        f"| largest memory growth (MiB) | {hungriest[1].rss_growth_mib:.0f} ({hungriest[0].recipe.name}) |",
        "",
        "Tiling refused with a clear error (the slide opens and shows): "
        + ", ".join(f"{k} {n}" for k, n in sorted(refusals.items()))
        + ".",
    ]
    for v, o in known:
        issues = ", ".join(_unexpected(v, o)) or "passes now"
        lines += ["", f"Known issue, {v.recipe.name} ({issues}): {v.recipe.known_issue}."]
    if cli:
        lines += _cli_lines(cli)
    lines += ["", "| variant | what was done | outcome | detail | s | MiB |", "|---|---|---|---|---|---|"]
    for v, o in rows:
        if o is None:
            lines.append(f"| {v.recipe.name} | {v.recipe.note} | skipped | running as root | | |")
            continue
        detail = o.error or o.first_damage or ""
        if o.kind == fz.PARTIAL:
            detail = f"{o.damaged} damaged, {o.excluded}/{o.tiles_read} tiles excluded; first: {detail}"
        if o.refused:
            refused = f"tiling refused: {o.refused}"
            detail = f"{detail}; tiling refused: {_kind_of(o.refused)}" if detail else refused
        detail = detail.replace("|", "/")[:160]
        lines.append(
            f"| {v.recipe.name} | {v.recipe.note} | {o.kind} | {detail} | {o.seconds:.2f} | "
            f"{o.rss_growth_mib:.0f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shared", default=str(REPO.parent / "shared" / "data" / "slides"))
    parser.add_argument("--no-cli", action="store_true", help="skip the command-line runs")
    args = parser.parse_args()
    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # it logs every damaged tag it meets
    with tempfile.TemporaryDirectory(prefix="wsirobust-fuzz-") as tmp:
        work = Path(tmp)
        pyramid = fz.generate_pyramid(work / "tumour_A.tiff")
        corpus = fz.build_corpus(work / "corpus", fz.Sources.from_folders(Path(args.shared), pyramid))
        rows = run_corpus(corpus)
        cli = [] if args.no_cli else run_cli_subset(corpus, work)
    body = report(rows, cli)
    write_section("fuzz", body)
    print(body)
    failed = [v for v, o in rows if o is not None and _unexpected(v, o) and not v.recipe.known_issue]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
