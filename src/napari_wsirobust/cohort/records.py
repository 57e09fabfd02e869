"""The editable cohort table of the Train widget as plain records (no Qt).

A record is a dict over :data:`TABLE_COLUMNS` with string values, what a table widget shows and the
user edits. :func:`records_to_rows` turns them into :class:`~.table.CohortRow` objects, to be
validated by :func:`~.table.build_cohort_table` like a cohort CSV. ``mpp`` is the slide's pixel
size in µm/px that replaces its file's; blank: the file's.
"""

from __future__ import annotations

from pathlib import Path

from .table import REFERENCE, TRAIN, VAL, CohortError, CohortRow, CohortTable, row_mpp

TABLE_COLUMNS = ("slide_id", "label", "site", "patient", "split", "mpp", "labels_from", "path")
SPLITS = (TRAIN, VAL, "test", REFERENCE)  # and test_* (e.g. test_id, test_ood): evaluation splits


def is_known_split(split: str) -> bool:
    """A split the table accepts: train, val, reference, test or test_<name> (a typo is refused)."""
    return split in SPLITS or split.startswith("test_")


def _mpp_text(mpp: float | None) -> str:
    return "" if mpp is None else str(mpp)


def record_for_slide(path: str, site: str | None = None, mpp: float | None = None) -> dict[str, str]:
    """A new record for a slide: id from the file name, no label yet, site from the scanner vendor,
    ``mpp`` the pixel size it is read with (None: its file's)."""
    stem = Path(path).stem
    return {
        "slide_id": stem,
        "label": "",
        "site": site or "unknown",
        "patient": stem,
        "split": "",
        "mpp": _mpp_text(mpp),
        "labels_from": "table",
        "path": str(Path(path).resolve()),
    }


def records_from_table(table: CohortTable) -> list[dict[str, str]]:
    return [
        {
            "slide_id": r.slide_id,
            "label": r.label,
            "site": r.site,
            "patient": r.patient,
            "split": r.split,
            "mpp": _mpp_text(r.mpp),
            "labels_from": "table",
            "path": r.path,
        }
        for r in table.rows
    ]


def records_to_rows(records: list[dict[str, str]]) -> list[CohortRow]:
    """Rows from edited records; empty patient -> the slide id, empty site -> "unknown", empty mpp ->
    the file's pixel size (a value that is not one is refused)."""
    rows = []
    for i, rec in enumerate(records, 1):
        values = {k: str(rec.get(k) or "").strip() for k in TABLE_COLUMNS}
        if not values["path"]:
            raise CohortError(f"row {i}: no slide path")
        if not Path(values["path"]).exists():
            raise CohortError(f"row {i}: slide file not found: {values['path']}")
        if values["split"] and not is_known_split(values["split"]):
            raise CohortError(
                f"row {i}: split {values['split']!r} is not one of {', '.join(SPLITS)} or test_<name>"
            )
        mpp = row_mpp(values["mpp"], f"row {i}")
        slide_id = values["slide_id"] or Path(values["path"]).stem
        rows.append(
            CohortRow(
                slide_id=slide_id,
                path=values["path"],
                label=values["label"],
                site=values["site"] or "unknown",
                patient=values["patient"] or slide_id,
                split=values["split"],
                mpp=mpp,
            )
        )
    return rows
