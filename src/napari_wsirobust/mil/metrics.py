"""Evaluation metrics for slide-level predictions (numpy in, floats out; NaN where undefined).

- AUC: area under the ROC curve; for C > 2 classes the macro mean of one-vs-rest AUCs over the
  classes present.
- Balanced accuracy: mean per-class recall of the arg-max prediction.
- Expected calibration error (ECE): predictions binned by confidence (max probability) into
  ``n_bins`` equal-width bins; ECE = sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|.
- Bootstrap 95 % CI: the 2.5/97.5 percentiles of the metric over resamples of patients (slides of
  a patient stay together), resamples where the metric is undefined skipped.
- Localisation AUC: per slide with tumour ground truth, AUC of tile attention against the tile
  being mostly tumour (fraction >= 0.5); averaged over slides where both kinds of tile exist.
- Site predictability: cross-validated balanced accuracy of a standardised, L2-regularised logistic
  regression predicting the site from a representation (chance = 1 / number of sites). Standardising
  each dimension makes it find *any* consistent linear trace of the site, however small its variance.
  Its chance level on a given set (:func:`site_probe_chance`): the 95th percentile of the same probe
  with the sites shuffled among the slides (with few slides, chance is a band, not 1 / sites).
- Site variance share: the fraction of a representation's total variance that lies between the site
  means, eta^2 = sum_s n_s ||m_s - m||^2 / sum_i ||x_i - m||^2 (0: sites share one mean; 1: the
  representation is the site). Complements the probe by *how much* of the representation is the site;
  with no site effect its expectation is about (sites - 1) / (n - 1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def roc_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Binary ROC AUC (ties count one half); NaN when only one class is present."""
    y = np.asarray(y_true).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auc_ovr(y_true: np.ndarray, probs: np.ndarray) -> float:
    """AUC for (n, C) probabilities: binary AUC of class 1 for C = 2, else macro one-vs-rest."""
    y = np.asarray(y_true)
    probs = np.asarray(probs)
    if probs.shape[1] == 2:
        return roc_auc(y == 1, probs[:, 1])
    aucs = [roc_auc(y == c, probs[:, c]) for c in range(probs.shape[1])]
    aucs = [a for a in aucs if not np.isnan(a)]
    return float(np.mean(aucs)) if len(aucs) >= 2 else float("nan")


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    y, p = np.asarray(y_true), np.asarray(y_pred)
    if len(y) == 0:
        return float("nan")
    return float(np.mean([np.mean(p[y == c] == c) for c in np.unique(y)]))


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> float:
    y = np.asarray(y_true)
    probs = np.asarray(probs)
    if len(y) == 0:
        return float("nan")
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        in_bin = bins == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(ece)


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    probs: np.ndarray,
    groups: Sequence[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """95 % percentile interval of ``metric(y, probs)`` resampling ``groups`` (patients) with
    replacement; (NaN, NaN) when fewer than 20 resamples give a defined value."""
    y, probs = np.asarray(y_true), np.asarray(probs)
    groups_arr = np.asarray(groups if groups is not None else np.arange(len(y)).astype(str))
    unique = np.unique(groups_arr)
    members = [np.flatnonzero(groups_arr == g) for g in unique]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_resamples):
        pick = rng.integers(0, len(unique), len(unique))
        idx = np.concatenate([members[i] for i in pick])
        v = metric(y[idx], probs[idx])
        if not np.isnan(v):
            values.append(v)
    if len(values) < 20:
        return float("nan"), float("nan")
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def per_site_auc(y_true: np.ndarray, probs: np.ndarray, sites: Sequence[str]) -> dict[str, float]:
    y, probs, sites_arr = np.asarray(y_true), np.asarray(probs), np.asarray(sites)
    return {str(s): auc_ovr(y[sites_arr == s], probs[sites_arr == s]) for s in np.unique(sites_arr)}


def localisation_auc(
    attentions: Sequence[np.ndarray], tumour_fractions: Sequence[np.ndarray | None], threshold: float = 0.5
) -> float:
    """Mean per-slide AUC of attention vs ground-truth tumour tiles (NaN if no slide qualifies)."""
    aucs = []
    for a, f in zip(attentions, tumour_fractions):
        if f is None:
            continue
        auc = roc_auc(np.asarray(f) >= threshold, np.asarray(a))
        if not np.isnan(auc):
            aucs.append(auc)
    return float(np.mean(aucs)) if aucs else float("nan")


def site_predictability(
    representations: np.ndarray, sites: Sequence[str], folds: int = 5, seed: int = 0
) -> float:
    """Cross-validated balanced accuracy of a linear probe predicting site (see module docstring)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(representations, dtype=np.float64)
    s = np.asarray(sites)
    _, counts = np.unique(s, return_counts=True)
    if len(counts) < 2:
        return float("nan")
    k = int(min(folds, counts.min()))
    if k < 2:
        return float("nan")
    predicted = np.empty(len(s), dtype=s.dtype)
    for train, test in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, s):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        probe.fit(x[train], s[train])
        predicted[test] = probe.predict(x[test])
    return balanced_accuracy(s, predicted)


def site_probe_chance(
    representations: np.ndarray,
    sites: Sequence[str],
    permutations: int = 100,
    quantile: float = 0.95,
    seed: int = 0,
) -> float:
    """The ``quantile`` of :func:`site_predictability` over ``permutations`` shufflings of the sites
    among the slides: what the probe reaches by chance on these representations."""
    rng = np.random.default_rng(seed)
    s = np.asarray(sites)
    null = [site_predictability(representations, rng.permutation(s), seed=seed) for _ in range(permutations)]
    null = [v for v in null if not np.isnan(v)]
    return float(np.quantile(null, quantile)) if null else float("nan")


def site_variance_share(representations: np.ndarray, sites: Sequence[str]) -> float:
    """Between-site share of the representation's total variance (eta^2; see module docstring)."""
    x = np.asarray(representations, dtype=np.float64)
    s = np.asarray(sites)
    if len(x) != len(s):
        raise ValueError(f"{len(x)} representations but {len(s)} sites")
    if len(np.unique(s)) < 2:
        return float("nan")
    centred = x - x.mean(axis=0)
    total = float((centred**2).sum())
    if total <= 0:
        return float("nan")
    between = sum(
        float((s == site).sum() * (centred[s == site].mean(axis=0) ** 2).sum()) for site in np.unique(s)
    )
    return between / total
