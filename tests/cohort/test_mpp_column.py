"""The optional ``mpp`` column of cohort CSVs and of the Train table's records: blank means the file's
pixel size, a value replaces it, anything that is not a pixel size is refused by CSV, row and
value, and the column is written back."""

from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from napari_wsirobust.cohort import (
    COHORT_COLUMNS,
    TABLE_COLUMNS,
    CohortError,
    read_cohort_table,
    record_for_slide,
    records_from_table,
    records_to_rows,
    write_cohort_csv,
)

INVALID = ["0", "-0.25", "nan", "NaN", "inf", "abc", "0.25 µm", "0.001", "51"]


def _csv(path: Path, mpps: list[str], header: tuple[str, ...] = ("path", "label", "mpp")) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, mpp in enumerate(mpps):
            writer.writerow([f"s{i}.tiff", "ab"[i % 2], mpp][: len(header)])
    return path


def test_blank_means_from_the_file_and_values_are_read(tmp_path: Path) -> None:
    table = read_cohort_table(_csv(tmp_path / "c.csv", ["", "0.25", " 0.2527 ", "50"]))
    assert [r.mpp for r in table.rows] == [None, 0.25, 0.2527, 50.0]
    assert all("mpp" not in r.extra for r in table.rows)
    without = read_cohort_table(_csv(tmp_path / "plain.csv", ["", ""], ("path", "label")))
    assert [r.mpp for r in without.rows] == [None, None]


def test_default_mpp_fills_only_blank_rows(tmp_path: Path) -> None:
    table = read_cohort_table(_csv(tmp_path / "c.csv", ["", "0.25"]), default_mpp=0.5)
    assert [r.mpp for r in table.rows] == [0.5, 0.25]  # the CSV's own value wins


@pytest.mark.parametrize("value", INVALID)
def test_invalid_values_are_refused_naming_csv_row_and_value(tmp_path: Path, value: str) -> None:
    path = _csv(tmp_path / "my cohort.csv", ["0.5", "", value])
    with pytest.raises(CohortError, match=rf"my cohort\.csv, line 4: mpp '{value}' is not a pixel size"):
        read_cohort_table(path)


def test_written_back_and_read_again(tmp_path: Path) -> None:
    rows = read_cohort_table(_csv(tmp_path / "c.csv", ["", "0.2527", "0.5"])).rows
    saved = write_cohort_csv(rows, tmp_path / "saved.csv")
    assert "mpp" in COHORT_COLUMNS
    assert [r["mpp"] for r in csv.DictReader(saved.read_text().splitlines())] == ["", "0.2527", "0.5"]
    assert [r.mpp for r in read_cohort_table(saved).rows] == [None, 0.2527, 0.5]


def test_train_table_records_carry_the_mpp(tmp_path: Path) -> None:
    slides = [tmp_path / f"s{i}.tiff" for i in range(3)]
    for s in slides:
        s.write_bytes(b"")
    assert "mpp" in TABLE_COLUMNS
    records = [record_for_slide(str(slides[0])), record_for_slide(str(slides[1]), "A", 0.25)]
    assert [r["mpp"] for r in records] == ["", "0.25"]
    records.append({**record_for_slide(str(slides[2])), "mpp": " 0.5 "})
    rows = records_to_rows(records)
    assert [r.mpp for r in rows] == [None, 0.25, 0.5]
    labelled = [replace(r, label="ab"[i % 2]) for i, r in enumerate(rows)]
    table = read_cohort_table(write_cohort_csv(labelled, tmp_path / "t.csv"))
    assert [r["mpp"] for r in records_from_table(table)] == ["", "0.25", "0.5"]
    records[1]["mpp"] = "zero"
    with pytest.raises(CohortError, match="row 2: mpp 'zero' is not a pixel size"):
        records_to_rows(records)
