"""`wsirobust diagnose` on a few generated slides with the bundled demo head."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from napari_wsirobust.cli import main
from napari_wsirobust.models import DEMO_MODEL_DIR
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("diagnose-cohort")
    rows = []
    for i in range(8):
        tumour, scanner = i % 2 == 0, "AB"[(i // 2) % 2]
        tissue = TissueSpec(
            seed=500 + i, tumour=tumour, width=640, height=448, tumour_fraction=0.4, atypia=1.0
        )
        path = folder / f"s{i}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), path)
        rows.append([path.name, "tumour" if tumour else "normal", scanner, f"p{i}", "test"])
    with open(folder / "cohort.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(rows)
    return folder / "cohort.csv"


def test_diagnose_writes_metrics_and_projection(
    cohort_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", str(cohort_csv), "--model", str(DEMO_MODEL_DIR), "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "diagnostics.json").read_text())
    assert data["n_slides"] == 8 and data["sites"] == ["A", "B"] and data["chance"] == 0.5
    assert 0.0 <= data["tile_robustness_index"] <= 1.0 and data["tile_k"] >= 1
    assert 0.0 <= data["site_predictability_head"] <= 1.0
    assert [m["site"] for m in data["per_site"]] == ["all", "A", "B"]
    assert (tmp_path / "projection.png").stat().st_size > 10_000
    assert "robustness index tiles" in capsys.readouterr().out


def test_diagnose_refuses_bad_inputs(
    cohort_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["diagnose", str(cohort_csv), "--model", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "error" in capsys.readouterr().err
    args = [
        "diagnose",
        str(cohort_csv),
        "--model",
        str(DEMO_MODEL_DIR),
        "--splits",
        "train",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 2 and "need at least two" in capsys.readouterr().err
