"""A DICOM WSI folder is a slide for every command and in cohort CSVs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from napari_wsirobust.cli import main


def test_info_and_extract_take_a_dicom_folder(
    dicom_slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["info", str(dicom_slide), "--json"]) == 0
    meta = json.loads(capsys.readouterr().out)
    meta = meta[0] if isinstance(meta, list) else meta
    assert meta["backend"] == "wsidicom" and meta["mpp_x"] == pytest.approx(0.499)
    listing = tmp_path / "slides.csv"
    with open(listing, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path"])
        writer.writerow([str(dicom_slide)])
    code = main(["extract", str(listing), "--cache", str(tmp_path / "cache"), "--workers", "0"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "extracted cmu-1-small-region" in out and "1 slide(s): 1 extracted" in out
