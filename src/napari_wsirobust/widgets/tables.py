"""The docks' magicgui tables: as tall as their rows (up to a limit, then they scroll) and never wider
than the dock (they scroll sideways), so a table never takes the slide's room."""

from __future__ import annotations

from magicgui.widgets import Table
from qtpy.QtWidgets import QAbstractScrollArea, QSizePolicy

MAX_VISIBLE_ROWS = 10


def compact_table(table: Table, min_rows: int = 1) -> None:
    """Set a table up to scroll rather than widen the dock, as tall as ``min_rows`` rows for now."""
    native = table.native
    native.setSizeAdjustPolicy(QAbstractScrollArea.SizeAdjustPolicy.AdjustIgnored)
    native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
    native.horizontalHeader().setStretchLastSection(True)
    fit_height(table, min_rows=min_rows)


def fit_height(table: Table, max_rows: int = MAX_VISIBLE_ROWS, min_rows: int = 1) -> None:
    """Height for the header and ``min_rows`` to ``max_rows`` rows (more rows scroll)."""
    native = table.native
    rows = max(min_rows, min(native.rowCount(), max_rows))
    row_height = native.verticalHeader().defaultSectionSize()
    scroll = native.horizontalScrollBar().sizeHint().height()
    height = native.horizontalHeader().height() + rows * row_height + scroll + 2 * native.frameWidth()
    native.setFixedHeight(height)


def fit_table(table: Table, max_rows: int = MAX_VISIBLE_ROWS, min_rows: int = 1) -> None:
    """After new contents: columns as wide as their contents, height to the rows."""
    table.native.resizeColumnsToContents()
    fit_height(table, max_rows, min_rows)
