"""Small helpers for the docks' magicgui tables."""

from __future__ import annotations

from magicgui.widgets import Table


def fit_columns(table: Table) -> None:
    """Columns as wide as their contents, so names and values are readable rather than elided (the
    table scrolls sideways when the dock is narrower)."""
    table.native.resizeColumnsToContents()
