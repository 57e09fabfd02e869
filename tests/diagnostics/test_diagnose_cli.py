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


def test_profiles_cli_writes_loadable_site_profiles(cohort_csv: Path, tmp_path: Path) -> None:
    from napari_wsirobust.diagnostics import load_profiles
    from napari_wsirobust.stain import angle_degrees
    from napari_wsirobust.synthetic import SCANNER_PROFILES

    out = tmp_path / "profiles.json"
    assert main(["profiles", str(cohort_csv), "--out", str(out)]) == 0
    profiles = load_profiles(out)
    assert sorted(profiles) == ["A", "B"]

    def distance(profile, scanner: str) -> float:  # type: ignore[no-untyped-def]
        truth = SCANNER_PROFILES[scanner]
        return angle_degrees(profile.hematoxylin_od, truth.hematoxylin_od) + angle_degrees(
            profile.eosin_od, truth.eosin_od
        )

    # these small slides (few tiles each, atypical nuclei) give a coarser estimate than the 1024 x 768
    # slides of test_stain (measured up to 4.1 degrees here): require the right nearest scanner
    for site, profile in profiles.items():
        assert min("ABC", key=lambda s: distance(profile, s)) == site
    assert main(["profiles", str(tmp_path / "none.csv"), "--out", str(out)]) == 2
    assert main(["profiles", str(cohort_csv)]) == 0  # default: saved with the cohort
    assert load_profiles(cohort_csv.with_name("cohort_profiles.json")) == profiles
