"""`wsirobust diagnose` on a few generated slides with the bundled demo head."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
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
    tiles = data["tile_robustness"]
    assert 0.0 <= tiles["ri"] <= 1.0 and tiles["k"] >= 1 and 0.0 < tiles["ri_support"] <= 1.0
    assert 0.0 <= tiles["mari"] <= 1.0 and -1.0 < tiles["croma_worst"] <= tiles["croma"] < 1.0
    assert tiles["ri_worst"] <= tiles["ri"] and tiles["source"].startswith("croma")
    # 8 slides, 2 per (scanner, label): too few for CRoMa's 5 neighbours of each kind per slide
    assert data["slide_robustness"]["croma_reason"].startswith("needs 5 samples")
    assert 0.0 <= data["site_predictability_head"] <= 1.0
    assert [m["site"] for m in data["per_site"]] == ["all", "A", "B"]
    assert (tmp_path / "projection.png").stat().st_size > 10_000
    with open(tmp_path / "robustness.csv", newline="") as fh:
        table = {(r["level"], r["metric"]): r for r in csv.DictReader(fh)}
    assert float(table["tiles", "CRoMa"]["value"]) == pytest.approx(tiles["croma"])
    assert int(table["tiles", "RI"]["k"]) == tiles["k"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "8 slides, 2 sites (chance 0.50)"
    printed = {line.strip().split("  ")[0]: line for line in lines}
    for level in ("tiles", "slides"):
        for metric in ("RI", "MaRI", "CRoMa"):
            assert f"{metric}, {level}" in printed and f"{metric} worst 10 %, {level}" in printed
    assert f"(k={tiles['k']}, support" in printed["RI, tiles"] and "croma" in printed["RI, tiles"]
    assert f"{tiles['croma_worst']:.3f}" in printed["CRoMa worst 10 %, tiles"]
    assert "site probe, head" in printed and "site variance share, embeddings" in printed


def test_croma_ri_equals_our_index_on_this_cohort(cohort_csv: Path) -> None:
    """The demo encoder's tile and slide embeddings of the eight slides, at each k they allow."""
    from napari_wsirobust.cohort import read_cohort_table
    from napari_wsirobust.diagnostics import robustness_index, robustness_metrics
    from napari_wsirobust.mil import TrainedHead, extract_config_for, load_bags

    head = TrainedHead.load(DEMO_MODEL_DIR)
    table = read_cohort_table(cohort_csv, label_names=head.label_names)
    bags = load_bags(table, table.rows, extract_config_for(head, None), views=())  # cached by diagnose
    rows = [b.row for b in bags for _ in range(b.n_tiles)]
    tiles = (
        np.concatenate([b.features for b in bags]),
        [r.label for r in rows],
        [r.site for r in rows],
        [r.slide_id for r in rows],
    )
    slides = (
        np.stack([b.features.mean(axis=0) for b in bags]),
        [b.row.label for b in bags],
        [b.row.site for b in bags],
        [b.row.patient for b in bags],
    )
    for x, labels, sites, groups in (tiles, slides):
        available = len(x) - max(groups.count(g) for g in set(groups))
        for k in (1, 3, 5, 11, 21):
            if k < available:  # croma reaches one neighbour fewer than all others
                ours = robustness_index(x, labels, sites, k=k, groups=groups).robustness_index
                theirs = robustness_metrics(x, labels, sites, groups, k_candidates=(k,)).ri
                assert theirs == pytest.approx(ours, abs=1e-4, nan_ok=True)


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
