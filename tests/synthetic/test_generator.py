"""The synthetic generator: determinism, ground truth, scanner effects, cohort design."""

from __future__ import annotations

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import tiffslide

from napari_wsirobust.synthetic import (
    SCANNER_PROFILES,
    CohortConfig,
    SyntheticSlideSpec,
    TissueSpec,
    cohort_is_complete,
    generate_cohort,
    load_ground_truth,
    read_cohort_csv,
    write_synthetic_slide,
)
from napari_wsirobust.synthetic.cohort import plan_cohort
from napari_wsirobust.synthetic.render import concentrations_to_rgb
from napari_wsirobust.synthetic.slide import render_region
from napari_wsirobust.synthetic.tissue import TissueLayout

SMALL = dict(width=768, height=512)


def _cell_means(values: np.ndarray, step: int) -> np.ndarray:
    h, w = values.shape[0] // step * step, values.shape[1] // step * step
    return values[:h, :w].reshape(h // step, step, w // step, step).mean(axis=(1, 3))


def _optical_density(rgb: np.ndarray, background: tuple[float, float, float]) -> np.ndarray:
    return -np.log10(np.clip(rgb.astype(np.float64), 1, 255) / np.asarray(background))


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    spec = SyntheticSlideSpec.make(TissueSpec(seed=21, tumour=True, **SMALL), "B")
    a = write_synthetic_slide(spec, tmp_path / "a.tiff").slide_path
    b = write_synthetic_slide(spec, tmp_path / "b.tiff").slide_path
    assert a.read_bytes() == b.read_bytes()
    other = SyntheticSlideSpec.make(TissueSpec(seed=22, tumour=True, **SMALL), "B")
    c = write_synthetic_slide(other, tmp_path / "c.tiff").slide_path
    assert c.read_bytes() != a.read_bytes()


def test_band_rendering_does_not_depend_on_band_boundaries() -> None:
    layout = TissueLayout(TissueSpec(seed=4, tumour=True, **SMALL))
    whole_h, whole_e = layout.render_band(0, 512)
    top_h, _ = layout.render_band(0, 200)
    bottom_h, bottom_e = layout.render_band(200, 512)
    np.testing.assert_allclose(np.concatenate([top_h, bottom_h]), whole_h, atol=1e-6)
    np.testing.assert_allclose(bottom_e, whole_e[200:], atol=1e-6)


def test_tumour_mask_is_aligned_with_tumour_nuclei() -> None:
    """Haematoxylin density per ground-truth cell is far higher inside the tumour mask, and the
    mask matches the nuclei best at zero shift (a misaligned mask would peak elsewhere)."""
    spec = SyntheticSlideSpec.make(TissueSpec(seed=8, tumour=True, width=1024, height=1024), "A")
    layout = TissueLayout(spec.tissue)
    rgb = render_region(spec)
    profile = spec.profile
    od = _optical_density(rgb, profile.background_rgb).reshape(-1, 3)
    conc, *_ = np.linalg.lstsq(profile.stain_matrix.T.astype(np.float64), od.T, rcond=None)
    hema = conc[0].reshape(rgb.shape[:2])
    step = int(round(layout.field_step))
    per_cell = _cell_means(hema, step)
    tumour = layout.tumour_mask[: per_cell.shape[0], : per_cell.shape[1]]
    tissue = layout.tissue_mask[: per_cell.shape[0], : per_cell.shape[1]]
    inside = per_cell[tumour].mean()
    outside = per_cell[tissue & ~tumour].mean()
    assert inside > 1.8 * outside

    def agreement(dy: int, dx: int) -> float:
        shifted = np.roll(np.roll(tumour, dy, axis=0), dx, axis=1)
        return float(np.corrcoef(per_cell[4:-4, 4:-4].ravel(), shifted[4:-4, 4:-4].ravel())[0, 1])

    best = max(((dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)), key=lambda s: agreement(*s))
    assert best == (0, 0)


def test_ground_truth_file_round_trips(tumour_slide: Path) -> None:
    truth = load_ground_truth(tumour_slide)
    assert truth.tumour.any() and (truth.tumour <= truth.tissue).all()
    assert truth.step_px == pytest.approx(16.0)  # 8 µm cells at 0.5 µm/px
    assert truth.spec["tissue"]["tumour"] is True
    h, w = truth.tumour.shape
    assert truth.tumour_fraction_in(0, 0, w * 16, h * 16) == pytest.approx(truth.tumour.mean())
    with pytest.raises(FileNotFoundError, match="no ground truth"):
        load_ground_truth(tumour_slide.with_name("other.tiff"))


def test_background_matches_profile_and_tissue_is_dark() -> None:
    for name, profile in SCANNER_PROFILES.items():
        spec = SyntheticSlideSpec.make(TissueSpec(seed=3, tumour=False, **SMALL), name)
        layout = TissueLayout(spec.tissue)
        rgb = render_region(spec).astype(np.float64)
        step = int(round(layout.field_step))
        cells = np.stack([_cell_means(rgb[..., c], step) for c in range(3)], axis=-1)
        tissue = layout.tissue_mask[: cells.shape[0], : cells.shape[1]]
        glass = ~tissue
        glass[1:-1, 1:-1] &= ~tissue[:-2, 1:-1] & ~tissue[2:, 1:-1]  # away from borders
        background = cells[glass].mean(axis=0)
        expected = 255 * (np.asarray(profile.background_rgb) / 255) ** (1 / profile.gamma)
        np.testing.assert_allclose(background, expected, atol=4)
        assert cells[tissue].mean() < background.mean() - 30, name


def test_scanner_profiles_change_colour_not_layout() -> None:
    tissue = TissueSpec(seed=9, tumour=True, **SMALL)
    images = {name: render_region(SyntheticSlideSpec.make(tissue, name)) for name in SCANNER_PROFILES}
    layout = TissueLayout(tissue)
    step = int(round(layout.field_step))
    masks, stats = {}, {}
    for name, img in images.items():
        od = _optical_density(img, SCANNER_PROFILES[name].background_rgb).sum(axis=-1)
        masks[name] = _cell_means(od, step) > 0.15
        tissue_px = img[
            np.kron(layout.tissue_mask, np.ones((step, step), bool))[: img.shape[0], : img.shape[1]]
        ]
        stats[name] = tissue_px.mean(axis=0)
    names = sorted(images)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou > 0.9, (a, b, iou)  # the same tissue layout under every scanner
            assert np.abs(stats[a] - stats[b]).max() > 10, (a, b)  # clearly different colour


def test_same_concentrations_different_profiles_differ_only_technically() -> None:
    hema = np.full((32, 32), 0.5, np.float32)
    eosin = np.full((32, 32), 0.3, np.float32)
    a = concentrations_to_rgb(hema, eosin, SCANNER_PROFILES["A"], 0.5, None)
    b = concentrations_to_rgb(hema, eosin, SCANNER_PROFILES["B"], 0.5, None)
    assert a.shape == b.shape == (32, 32, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() > 10
    empty = concentrations_to_rgb(np.zeros_like(hema), np.zeros_like(eosin), SCANNER_PROFILES["A"], 0.5, None)
    np.testing.assert_array_equal(empty[0, 0], np.rint(SCANNER_PROFILES["A"].background_rgb))


def test_cohort_design_is_confounded_in_training_and_balanced_in_test() -> None:
    cfg = CohortConfig()
    plan = plan_cohort(cfg)
    by_split = collections.defaultdict(list)
    for s in plan:
        by_split[s.split].append(s)
    train = [s for s in by_split["train"]]
    tumour = [s for s in train if s.label == "tumour"]
    normal = [s for s in train if s.label == "normal"]
    assert sum(s.scanner == "A" for s in tumour) / len(tumour) >= 0.85
    assert sum(s.scanner == "A" for s in normal) / len(normal) <= 0.15
    home = [s for s in by_split["test_ood"] if not s.swapped]
    cells = collections.Counter((s.label, s.scanner) for s in home)
    assert set(cells.values()) == {cfg.ood_patients_per_cell} and len(cells) == 6
    patients_per_split = {k: {s.patient for s in v} for k, v in by_split.items()}
    splits = list(patients_per_split)
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            assert not patients_per_split[a] & patients_per_split[b]
    swapped = [s for s in by_split["test_ood"] if s.swapped]
    assert len(swapped) == 2 * len(home)
    home_by_patient = {s.patient: s for s in home}
    for s in swapped:
        assert s.tissue == home_by_patient[s.patient].tissue and s.scanner != s.home_scanner


def test_rescanned_training_patients_add_paired_scans_and_keep_the_home_design() -> None:
    base = plan_cohort(CohortConfig())
    cfg = CohortConfig(rescanned_train_patients=2)
    plan = plan_cohort(cfg)
    assert [s for s in plan if not s.swapped] == [s for s in base if not s.swapped]  # same home scans
    rescans = [s for s in plan if s.swapped and s.split == "train"]
    assert len(rescans) == 2 * 2 * 2  # 2 patients per label, each on the 2 other scanners
    for label in ("tumour", "normal"):
        patients = {s.patient for s in rescans if s.label == label}
        assert len(patients) == 2
        for patient in patients:
            scans = [s for s in plan if s.patient == patient]
            assert sorted(s.scanner for s in scans) == ["A", "B", "C"]
            assert len({s.tissue for s in scans}) == 1 and {s.split for s in scans} == {"train"}
    assert CohortConfig(rescanned_train_patients=0).identity() != cfg.identity()
    with pytest.raises(ValueError, match="rescanned_train_patients"):
        CohortConfig(rescanned_train_patients=17)


def test_reference_patients_are_unlabelled_rescans_added_after_every_other_slide() -> None:
    base = plan_cohort(CohortConfig())
    cfg = CohortConfig(reference_patients=2)
    plan = plan_cohort(cfg)
    assert plan[: len(base)] == base  # every labelled slide keeps its tissue, file and split
    reference = plan[len(base) :]
    assert {s.split for s in reference} == {"reference"} and len(reference) == 2 * 2 * 3
    for patient in {s.patient for s in reference}:
        scans = [s for s in reference if s.patient == patient]
        assert sorted(s.scanner for s in scans) == ["A", "B", "C"] and len({s.tissue for s in scans}) == 1
    assert sorted(s.label for s in reference[::3]) == ["normal", "normal", "tumour", "tumour"]
    assert CohortConfig(reference_patients=0).identity() == CohortConfig().identity() != cfg.identity()
    with pytest.raises(ValueError, match="reference_patients"):
        CohortConfig(reference_patients=-1)


def test_small_cohort_files_csv_and_resume(small_cohort: Path) -> None:
    rows = read_cohort_csv(small_cohort)
    assert {"path", "label", "scanner", "patient", "split"} <= set(rows[0])
    assert len(rows) == len(plan_cohort(CohortConfig(width=512, height=384)))
    for row in rows[:3]:
        slide = tiffslide.TiffSlide(row["path"])
        assert slide.level_count >= 3
        assert float(slide.properties["tiffslide.mpp-x"]) == pytest.approx(0.5)
        assert Path(row["ground_truth"]).exists()
    cfg = CohortConfig(width=512, height=384, workers=1)
    assert cohort_is_complete(small_cohort.parent, cfg)
    first = Path(rows[0]["path"])
    before = os.stat(first).st_mtime_ns
    generate_cohort(small_cohort.parent, cfg)  # resumes: nothing to redo
    assert os.stat(first).st_mtime_ns == before
    with pytest.raises(FileExistsError, match="other settings"):
        generate_cohort(small_cohort.parent, CohortConfig(width=640, height=384))


def test_read_cohort_csv_rejects_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label\nx.tiff,tumour\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['patient', 'scanner', 'split'\]"):
        read_cohort_csv(bad)


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 64x64"):
        TissueSpec(seed=1, tumour=False, width=10, height=10)
    with pytest.raises(ValueError, match="unknown scanner profile 'Z'"):
        SyntheticSlideSpec.make(TissueSpec(seed=1, tumour=False), "Z")
