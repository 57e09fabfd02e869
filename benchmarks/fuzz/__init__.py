"""A fuzz corpus of damaged, truncated and forged slide files, and the stages each one goes through.

Shared by ``tests/io/test_fuzz_corpus.py`` (which loads this package by path) and
``benchmarks/bench_fuzz.py``. Every recipe writes one variant into its own folder from the shared
public slides or a generated pyramid, and says which outcomes are acceptable:

- ``partial``: the slide opens and reads; the bad tiles are reported (``slide.damaged_tiles``) or
  left out of analysis (strict tile reads raise ``UnreadableRegionError``);
- ``clean``: it opens and reads with nothing reported (the damage is in bytes that do not matter,
  or cannot be detected: the recipe's note says which);
- ``error``: a clear error, a :class:`WsiRobustError` whose one-line message starts with the file name.

Anything else (another exception type, a multi-line or anonymous message, a hang) is a ``crash``.
"""

from __future__ import annotations

from .corpus import RECIPE_NAMES, RECIPES, Recipe, Sources, Variant, build_corpus, generate_pyramid
from .stages import (
    CLEAN,
    CRASH,
    ERROR,
    HANG,
    PARTIAL,
    TIMEOUT_S,
    CliRun,
    Outcome,
    cli_commands,
    cli_problems,
    guarded,
    is_root,
    run_cli,
    run_variant,
)

__all__ = [
    "CLEAN",
    "CRASH",
    "ERROR",
    "HANG",
    "PARTIAL",
    "RECIPES",
    "RECIPE_NAMES",
    "TIMEOUT_S",
    "CliRun",
    "Outcome",
    "Recipe",
    "Sources",
    "Variant",
    "build_corpus",
    "cli_commands",
    "cli_problems",
    "generate_pyramid",
    "guarded",
    "is_root",
    "run_cli",
    "run_variant",
]
