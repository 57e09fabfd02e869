"""The shortcut benchmark harness: a confounded synthetic cohort, heads trained per loss preset and
seed, and the metrics that say whether a head learned the scanner instead of the biology.
"""

from __future__ import annotations

from .shortcut import (
    ShortcutConfig,
    ShortcutData,
    markdown_table,
    prepare,
    run_benchmark,
    summarise,
    train_preset,
    usable_presets,
    write_results,
)

__all__ = [
    "ShortcutConfig",
    "ShortcutData",
    "markdown_table",
    "prepare",
    "run_benchmark",
    "summarise",
    "train_preset",
    "usable_presets",
    "write_results",
]
