"""Slide lists (slides, CSVs with a path column, .txt lists) with each slide's pixel size override: a
CSV's mpp column where filled, else the command's value."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from napari_wsirobust.errors import InputError
from napari_wsirobust.features import slides_from_inputs, slides_with_mpp


def _csv(path: Path, mpps: list[str]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "mpp"])
        writer.writerows([f"s{i}.tiff", mpp] for i, mpp in enumerate(mpps))
    return path


def test_slide_lists_read_the_mpp_column(tmp_path: Path) -> None:
    listed = _csv(tmp_path / "list.csv", ["", "0.25"])
    txt = tmp_path / "list.txt"
    txt.write_text("/x/a.tiff\n")
    slides = slides_with_mpp([str(listed), str(txt), "/x/b.tiff"], mpp=0.5)
    assert [(Path(p).name, m) for p, m in slides] == [
        ("s0.tiff", 0.5),
        ("s1.tiff", 0.25),
        ("a.tiff", 0.5),
        ("b.tiff", 0.5),
    ]
    assert [m for _, m in slides_with_mpp([str(listed)])] == [None, 0.25]
    assert [Path(p).name for p in slides_from_inputs([str(listed)])] == ["s0.tiff", "s1.tiff"]
    with pytest.raises(InputError, match=r"bad\.csv, line 3: mpp '-1' is not a pixel size"):
        slides_with_mpp([str(_csv(tmp_path / "bad.csv", ["", "-1"]))])
