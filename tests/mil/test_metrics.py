"""Evaluation metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsirobust.mil import (
    auc_ovr,
    balanced_accuracy,
    expected_calibration_error,
    site_predictability,
    site_probe_chance,
    site_variance_share,
)
from napari_wsirobust.mil.metrics import bootstrap_ci, localisation_auc, per_site_auc, roc_auc


def test_roc_auc_known_values() -> None:
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    # pairs (pos, neg): (.5,.1) right, (.5,.5) tie, (.3,.1) right, (.3,.5) wrong -> (2 + 0.5) / 4
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.5, 0.5, 0.3])) == pytest.approx(0.625)
    assert np.isnan(roc_auc(np.array([1, 1]), np.array([0.2, 0.3])))


def test_multiclass_auc_is_macro_one_vs_rest() -> None:
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[y] * 0.8 + 0.2 / 3
    assert auc_ovr(y, probs) == 1.0
    shuffled = probs[[1, 2, 0, 4, 5, 3]]
    assert auc_ovr(y, shuffled) < 0.5


def test_balanced_accuracy_and_ece() -> None:
    assert balanced_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 0, 0])) == 0.5
    # all predictions confidence 0.9, half correct -> ECE = |0.5 - 0.9| = 0.4
    probs = np.array([[0.9, 0.1]] * 4)
    assert expected_calibration_error(np.array([0, 0, 1, 1]), probs) == pytest.approx(0.4)
    perfect = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(np.array([0, 1]), perfect) == pytest.approx(0.0)


def test_bootstrap_interval_brackets_the_estimate() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 80)
    score = y + rng.normal(0, 0.8, 80)
    probs = np.stack([1 - score, score], 1)
    auc = auc_ovr(y, probs)
    lo, hi = bootstrap_ci(auc_ovr, y, probs, n_resamples=300, seed=1)
    assert lo < auc < hi and hi - lo < 0.35


def test_per_site_and_localisation() -> None:
    y = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.2, 0.8], [0.8, 0.2]])
    assert per_site_auc(y, probs, ["A", "A", "B", "B"]) == {"A": 1.0, "B": 0.0}
    att = [np.array([0.1, 0.7, 0.2]), np.array([0.5, 0.5])]
    fractions = [np.array([0.0, 1.0, 0.2]), None]
    assert localisation_auc(att, fractions) == 1.0


def test_site_predictability_high_when_encoded_and_chance_when_not() -> None:
    rng = np.random.default_rng(0)
    sites = np.repeat(["A", "B", "C"], 20)
    encoded = rng.normal(size=(60, 8)) + 3 * (sites[:, None] == np.array(["A", "B", "C"] + ["A"] * 5)[None])
    assert site_predictability(encoded, sites) > 0.9
    assert site_predictability(rng.normal(size=(60, 8)), sites) < 0.6


def test_probe_chance_band_is_above_one_over_sites_with_few_slides() -> None:
    rng = np.random.default_rng(1)
    sites = np.repeat(["A", "B", "C"], 12)  # 36 slides, like the benchmark's test_ood
    x = rng.normal(size=(36, 32))
    chance = site_probe_chance(x, sites, permutations=60)
    assert 1 / 3 < chance < 0.65  # the band a probe reaches by luck, well above 1/3
    encoded = x + 3 * (sites[:, None] == "A")
    assert site_predictability(encoded, sites) > site_probe_chance(encoded, sites, permutations=20)
    assert np.isnan(site_probe_chance(x, ["A"] * 36, permutations=5))


def test_site_variance_share_on_hand_made_groups() -> None:
    # two sites, one dimension: values 0, 2 at site A (mean 1) and 4, 6 at site B (mean 5); grand mean 3.
    # between = 2 * (1 - 3)^2 + 2 * (5 - 3)^2 = 16, total = 9 + 1 + 1 + 9 = 20
    x = np.array([[0.0], [2.0], [4.0], [6.0]])
    assert site_variance_share(x, ["A", "A", "B", "B"]) == pytest.approx(0.8)
    # a second dimension with no site effect adds only to the total: 16 / (20 + 4 * 1)
    x2 = np.hstack([x, np.array([[1.0], [-1.0], [1.0], [-1.0]])])
    assert site_variance_share(x2, ["A", "A", "B", "B"]) == pytest.approx(16 / 24)
    # no site effect on random data: close to the (sites - 1) / (n - 1) expectation
    rng = np.random.default_rng(0)
    sites = np.repeat(["A", "B", "C"], 200)
    assert site_variance_share(rng.normal(size=(600, 16)), sites) == pytest.approx(2 / 599, abs=0.01)
    assert np.isnan(site_variance_share(x, ["A"] * 4))
    with pytest.raises(ValueError, match="4 representations but 3 sites"):
        site_variance_share(x, ["A", "A", "B"])
