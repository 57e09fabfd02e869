"""Robustness index of embeddings from k nearest neighbours (no Qt).

Among each sample's k nearest neighbours (cosine similarity; the sample itself and, with ``groups``,
samples of its own slide or patient excluded, since those share both biology and site trivially):

- SO: neighbours with the same class from another site (biology wins),
- OS: neighbours with another class from the same site (the technical signal wins),
- SS: same class, same site.

Summed over all samples, the robustness index follows PathoROB (Kömen et al. 2025, arXiv 2507.17845):
``RI = SO / (SO + OS)`` in [0, 1], 1 when neighbourhoods are organised by biology, 0 when by site;
:func:`robustness_index_original` gives de Jong et al. 2025 (arXiv 2501.18055),
``(SS + SO) / (SS + OS)``. k is chosen as PathoROB does, where the balanced accuracy of a k-NN
classifier of the biological class peaks (:func:`choose_k`).

The cohort diagnostics report croma's RI (:mod:`.croma_metrics`), which gives the same value as
:func:`robustness_index` at the same k (tests/diagnostics/test_croma_metrics.py); this module is
used where croma cannot be: when it is not installed. The two differ only where no neighbour is SO
or OS: NaN here, 0.5 with zero support in croma (reported as NaN by :mod:`.croma_metrics`), and in
how a k-NN vote tie is broken when k is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_K_CANDIDATES = (1, 3, 5, 7, 11, 15, 21, 31, 51)


@dataclass(frozen=True)
class NeighbourCounts:
    ss: int  # same class, same site
    so: int  # same class, other site
    os: int  # other class, same site
    oo: int  # other class, other site
    k: int

    @property
    def robustness_index(self) -> float:
        """PathoROB: SO / (SO + OS) (NaN when no neighbour is SO or OS)."""
        denominator = self.so + self.os
        return self.so / denominator if denominator else float("nan")

    @property
    def robustness_index_original(self) -> float:
        """de Jong et al.: (SS + SO) / (SS + OS)."""
        denominator = self.ss + self.os
        return (self.ss + self.so) / denominator if denominator else float("nan")


def nearest_neighbours(
    embeddings: np.ndarray, k: int, groups: Sequence[str] | None = None, chunk: int = 1024
) -> np.ndarray:
    """(N, k) indices of each row's k most cosine-similar other rows (not of its own group)."""
    x = np.asarray(embeddings, dtype=np.float32)
    n = len(x)
    if x.ndim != 2 or n < 2:
        raise ValueError(f"need an (N >= 2, D) embedding matrix, got shape {x.shape}")
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    group_ids = np.unique(np.asarray(groups), return_inverse=True)[1] if groups is not None else None
    available = n - 1 if group_ids is None else n - int(np.bincount(group_ids).max())
    if k < 1 or k > available:
        raise ValueError(f"k = {k} but only {available} neighbours are available to every sample")
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        sims = x[start:stop] @ x.T
        rows = np.arange(stop - start)
        sims[rows, start + rows] = -np.inf
        if group_ids is not None:
            sims[group_ids[start:stop, None] == group_ids[None, :]] = -np.inf
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
    return out


def neighbour_counts(
    neighbours: np.ndarray, labels: Sequence[object], sites: Sequence[object], k: int | None = None
) -> NeighbourCounts:
    """SS/SO/OS/OO totals over the first ``k`` columns of a :func:`nearest_neighbours` result."""
    nb = neighbours if k is None else neighbours[:, :k]
    y, s = np.asarray(labels), np.asarray(sites)
    same_class = y[nb] == y[:, None]
    same_site = s[nb] == s[:, None]
    return NeighbourCounts(
        ss=int((same_class & same_site).sum()),
        so=int((same_class & ~same_site).sum()),
        os=int((~same_class & same_site).sum()),
        oo=int((~same_class & ~same_site).sum()),
        k=nb.shape[1],
    )


def knn_balanced_accuracy(neighbours: np.ndarray, labels: Sequence[object], k: int) -> float:
    """Balanced accuracy of a majority vote over the first ``k`` neighbours (ties: the nearest wins)."""
    y = np.asarray(labels)
    classes, codes = np.unique(y, return_inverse=True)
    votes = np.zeros((len(y), len(classes)))
    for j in range(k):
        votes[np.arange(len(y)), codes[neighbours[:, j]]] += 1.0 + 1e-6 * (k - j)  # nearer breaks ties
    predicted = votes.argmax(axis=1)
    recalls = [np.mean(predicted[codes == c] == c) for c in range(len(classes))]
    return float(np.mean(recalls))


def choose_k(
    neighbours: np.ndarray, labels: Sequence[object], candidates: Sequence[int] = DEFAULT_K_CANDIDATES
) -> int:
    """The candidate k (<= the neighbours computed) where k-NN balanced accuracy peaks (smallest on ties)."""
    usable = [k for k in candidates if k <= neighbours.shape[1]]
    if not usable:
        raise ValueError(f"no candidate k <= {neighbours.shape[1]}")
    scores = [knn_balanced_accuracy(neighbours, labels, k) for k in usable]
    return usable[int(np.argmax(scores))]


def robustness_index(
    embeddings: np.ndarray,
    labels: Sequence[object],
    sites: Sequence[object],
    k: int | None = None,
    groups: Sequence[str] | None = None,
    candidates: Sequence[int] = DEFAULT_K_CANDIDATES,
) -> NeighbourCounts:
    """Neighbour counts (and so both indices) at ``k``, or at :func:`choose_k`'s k when None.

    The reports use croma's RI (same value at the same k); this is its stand-in where croma is not
    installed."""
    if not len(embeddings) == len(labels) == len(sites):
        raise ValueError("embeddings, labels and sites must have the same length")
    n_groups_max = len(embeddings) - 1
    if groups is not None:
        n_groups_max = len(embeddings) - int(np.unique(np.asarray(groups), return_counts=True)[1].max())
    k_max = k if k is not None else min(max(candidates), n_groups_max)
    neighbours = nearest_neighbours(embeddings, k_max, groups)
    chosen = k if k is not None else choose_k(neighbours, labels, candidates)
    return neighbour_counts(neighbours, labels, sites, chosen)
