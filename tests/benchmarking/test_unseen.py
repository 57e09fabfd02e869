"""The unseen-scanner benchmark's design and scoring: folds, reference calls, per-scanner figures."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsirobust.benchmarking.unseen import (
    UnseenScannerConfig,
    make_folds,
    reference_calls,
    scanner_metrics,
    summarise,
    unseen_summary,
    warning_rates,
)
from napari_wsirobust.cohort import CohortRow
from napari_wsirobust.mil import Bag, BagPrediction
from napari_wsirobust.synthetic import SCANNER_PROFILES, UNSEEN_PROFILES, CohortConfig
from napari_wsirobust.synthetic.cohort import plan_cohort


def test_folds_hold_out_each_training_scanner_with_twelve_test_patients(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folds = make_folds(UnseenScannerConfig(str(tmp_path)))
    assert [f.name for f in folds] == ["all", "without-A", "without-B", "without-C"]
    assert folds[0].seen == ("A", "B", "C") and folds[0].unseen == tuple(UNSEEN_PROFILES)
    for fold, held in zip(folds[1:], "ABC"):
        assert held not in fold.seen and fold.unseen == (held,)
        assert fold.cohort.confounded_scanner in fold.seen
        plan = plan_cohort(fold.cohort)
        trained_on = {s.scanner for s in plan if s.split in ("train", "val", "test_id")}
        assert trained_on == set(fold.seen)  # the held-out scanner renders test_ood only
        ood = [s for s in plan if s.split == "test_ood"]
        assert len({s.patient for s in ood}) == 12
        for patient in {s.patient for s in ood}:  # every test patient on every scanner of the fold
            assert {s.scanner for s in ood if s.patient == patient} == {*fold.seen, held}
    with pytest.raises(ValueError, match="unknown fold"):
        make_folds(UnseenScannerConfig(str(tmp_path), folds=("without-Z",)))


def test_the_default_cohort_is_unchanged_by_the_unseen_option() -> None:
    plain, extended = plan_cohort(CohortConfig()), plan_cohort(CohortConfig(test_scanners=("U1",)))
    assert [s for s in extended if s.scanner != "U1"] == plain  # same tissues, same files
    assert CohortConfig().identity() == "9b4ccf7e69b8ab44"  # cohorts generated before keep their folder
    assert CohortConfig(test_scanners=("U1",)).identity() != CohortConfig().identity()
    with pytest.raises(ValueError, match="test_scanners"):
        CohortConfig(test_scanners=("A",))


def test_unseen_profiles_lie_outside_the_training_ranges() -> None:
    def outside(value: float, values: list[float]) -> bool:
        return value < min(values) or value > max(values)

    training = list(SCANNER_PROFILES.values())
    for profile in UNSEEN_PROFILES.values():
        beyond = [
            name
            for name in (
                "hematoxylin_scale",
                "eosin_scale",
                "gamma",
                "blur_sigma_um",
                "noise_sigma",
                "jpeg_quality",
            )
            if outside(getattr(profile, name), [getattr(p, name) for p in training])
        ]
        glass = [
            outside(profile.background_rgb[c], [p.background_rgb[c] for p in training]) for c in range(3)
        ]
        assert len(beyond) + any(glass) >= 3, (profile.name, beyond)


def _bag(patient: str, site: str, label: int) -> Bag:
    row = CohortRow(f"{patient}_{site}", "x", ["normal", "tumour"][label], site, patient, "test_ood")
    return Bag(row, label, 0, np.zeros((1, 2), np.float32), grid=None)  # type: ignore[arg-type]


def _pred(p_tumour: float) -> BagPrediction:
    return BagPrediction(np.array([1 - p_tumour, p_tumour]), np.ones(1), np.zeros(4), None)


def test_calls_and_figures_per_scanner() -> None:
    cases = [  # patient, label, p on A, p on B, p on unseen U
        ("p1", 1, 0.9, 0.8, 0.4),  # tumour: called tumour on the training scanners, normal on U
        ("p2", 1, 0.7, 0.3, 0.6),  # tie on A/B: the mean (0.5 -> normal at argmax) is not above
        ("p3", 0, 0.1, 0.2, 0.3),
        ("p4", 0, 0.2, 0.1, 0.7),  # normal called tumour on U
    ]
    bags, preds = [], []
    for patient, label, *ps in cases:
        for site, p in zip(("A", "B", "U"), ps):
            bags.append(_bag(patient, site, label))
            preds.append(_pred(p))
    calls = reference_calls(bags, preds, ("A", "B"))
    assert calls["p1"] == 1 and calls["p3"] == 0 and calls["p4"] == 0
    assert calls["p2"] == 0  # tie; mean p(tumour) 0.5 is not more than p(normal)
    unseen = scanner_metrics(bags, preds, "U", calls, positive=1)
    assert unseen["n_slides"] == 4
    assert unseen["calls_changed"] == 3  # p1 (1 -> 0), p2 (0 -> 1), p4 (0 -> 1)
    assert unseen["accuracy"] == pytest.approx(0.5)  # p2 and p3 right
    assert unseen["p_tumour_tumour"] == pytest.approx(0.5) and unseen["p_tumour_normal"] == pytest.approx(0.5)
    assert unseen["auc"] == pytest.approx(0.5)
    seen_a = scanner_metrics(bags, preds, "A", calls, positive=1)
    assert seen_a["auc"] == 1.0 and seen_a["calls_changed"] == 1  # p2 is tumour on A, its call normal

    runs = [
        {"fold": "all", "preset": "plain", "seed": s, "unseen": ["U"], "scanners": {"U": unseen, "A": seen_a}}
        for s in range(2)
    ]
    rows = summarise(runs)
    assert {(r["scanner"], r["unseen"]) for r in rows} == {("U", True), ("A", False)}
    summary = unseen_summary(rows)["plain"]
    assert summary["calls_changed"] == 3 and summary["worst_calls_changed"] == 3 and summary["auc"] == 0.5


def test_warning_rates_per_scanner_and_over_seen_and_unseen() -> None:
    checks = [
        {"scanner": "A", "unseen": False, "distance": 0.4},
        {"scanner": "A", "unseen": False, "distance": 1.2},
        {"scanner": "U1", "unseen": True, "distance": 2.0},
        {"scanner": "U1", "unseen": True, "distance": 3.0},
    ]
    rates = warning_rates(checks, threshold=1.0)
    assert rates == {"A": 0.5, "U1": 1.0, "seen": 0.5, "unseen": 1.0}
