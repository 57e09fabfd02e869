"""Robustness index on hand-made embeddings whose neighbour counts are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsirobust.diagnostics import choose_k, nearest_neighbours, robustness_index


def _circle(degrees: list[float]) -> np.ndarray:
    t = np.deg2rad(degrees)
    return np.column_stack([np.cos(t), np.sin(t)])


# 0 deg (a, site 1), 10 deg (a, site 2), 90 deg (b, site 1), 100 deg (b, site 2)
X = _circle([0, 10, 90, 100])
LABELS = ["a", "a", "b", "b"]
SITES = [1, 2, 1, 2]


def test_biology_organised_neighbours_give_index_one() -> None:
    counts = robustness_index(X, LABELS, SITES, k=1)
    assert (counts.ss, counts.so, counts.os, counts.oo) == (0, 4, 0, 0)
    assert counts.robustness_index == 1.0


def test_site_organised_neighbours_give_index_zero() -> None:
    counts = robustness_index(X, ["a", "b", "a", "b"], [1, 1, 2, 2], k=1)
    assert (counts.so, counts.os) == (0, 4) and counts.robustness_index == 0.0


def test_k2_counts_worked_out_by_hand() -> None:
    # second neighbours: 0->90 (b,1: OS), 10->90 (b,1: OO), 90->10 (a,2: OO), 100->10 (a,2: OS)
    np.testing.assert_array_equal(nearest_neighbours(X, 2), [[1, 2], [0, 2], [3, 1], [2, 1]])
    counts = robustness_index(X, LABELS, SITES, k=2)
    assert (counts.ss, counts.so, counts.os, counts.oo) == (0, 4, 2, 2)
    assert counts.robustness_index == pytest.approx(4 / 6)
    assert counts.robustness_index_original == pytest.approx(4 / 2)


def test_groups_exclude_samples_of_the_same_slide() -> None:
    # 0 and 10 deg are tiles of one slide: each must then find its neighbour elsewhere
    nb = nearest_neighbours(X, 1, groups=["s1", "s1", "s2", "s3"])
    np.testing.assert_array_equal(nb[:, 0], [2, 2, 3, 2])
    with pytest.raises(ValueError, match="k = 3"):
        nearest_neighbours(X, 3, groups=["s1", "s1", "s2", "s3"])


def test_choose_k_peaks_with_knn_accuracy() -> None:
    # class a at 0-3 deg, class b at 10-13 deg, one a-labelled outlier at 10.5 deg among the b's.
    # k = 1: the outlier misleads b at 10 and 11 deg, and is itself wrong: BA = (4/5 + 2/4) / 2 = 0.65.
    # k = 3: only the outlier stays wrong: BA = (4/5 + 4/4) / 2 = 0.9, so k = 3 is chosen.
    from napari_wsirobust.diagnostics.knn import knn_balanced_accuracy

    x = _circle([0, 1, 2, 3, 10, 11, 12, 13, 10.5])
    y = ["a"] * 4 + ["b"] * 4 + ["a"]
    nb = nearest_neighbours(x, 3)
    assert knn_balanced_accuracy(nb, y, 1) == pytest.approx(0.65)
    assert knn_balanced_accuracy(nb, y, 3) == pytest.approx(0.9)
    assert choose_k(nb, y, (1, 3)) == 3
    assert robustness_index(x, y, [0] * 9, candidates=(1, 3)).k == 3


def test_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same length"):
        robustness_index(X, LABELS[:3], SITES, k=1)
    with pytest.raises(ValueError, match="N >= 2"):
        nearest_neighbours(X[:1], 1)
