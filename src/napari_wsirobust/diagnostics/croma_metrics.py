"""Robustness metrics of embeddings from the ``croma`` library (no Qt).

On embeddings with a biological class, a site (scanner, centre) and an independence group (slide
or patient; neighbours of the sample's own group are never counted), croma gives:

- **RI**, PathoROB's robustness index: among each sample's k nearest neighbours (cosine), SO are of
  the same class from another site, OS of another class from the same site; RI = SO / (SO + OS)
  summed over all samples, with k where a k-NN classifier of the class peaks in balanced accuracy.
  Its support is the share of samples with at least one SO or OS neighbour (the others have no
  per-sample RI).
- **MaRI**, the margin-aware RI: the same ratio with each neighbour weighted by exp(-d / tau), d its
  cosine distance and tau the median SO/OS neighbour distance at that k, so near neighbours count
  more than far ones.
- **CRoMa**, the cross-confounder robustness margin: per sample (d_OS - d_SO) / (d_OS + d_SO) in
  (-1, 1) from the mean distances to its m nearest SO and OS neighbours; > 0 when biology is nearer
  than the site. Reported as the median, with the share of samples at or below 0 (site-dominant).
  It needs m SO and m OS samples outside each sample's own group.

Each comes with its worst-10 % tail: the mean of the per-sample values at or below their 10th
percentile. A metric that cannot be computed on the input (one site, too few samples) is NaN with a
reason. Without croma installed, RI falls back to :func:`~napari_wsirobust.diagnostics.knn.robustness_index`,
which gives the same value at the same k, and MaRI and CRoMa are NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .knn import DEFAULT_K_CANDIDATES, robustness_index

if TYPE_CHECKING:
    import pandas as pd

CROMA_M = 5  # croma's headline number of SO and OS neighbours per sample
TAIL_ALPHA = 0.10  # the worst share of samples in the tail means (croma's RI/MaRI use 0.10)
NAN = float("nan")
NOT_INSTALLED = "croma is not installed (it comes with the ml extra)"
NO_TYPED_NEIGHBOUR = (
    "no sample has a same-class neighbour from another site or an other-class neighbour from its own "
    "site among its k nearest"
)


@dataclass(frozen=True)
class RobustnessMetrics:
    """RI, MaRI and CRoMa of one set of embeddings; a ``*_reason`` is set where its metric is NaN."""

    n_samples: int  # samples scored (tiles or slides)
    k: int = 0  # neighbours per sample of RI and MaRI (0: not computed)
    ri: float = NAN
    ri_support: float = NAN  # share of samples with an SO or OS neighbour among their k
    ri_worst: float = NAN  # mean of the worst 10 % of per-sample RI
    mari: float = NAN
    mari_tau: float = NAN  # distance scale of the MaRI weights
    mari_worst: float = NAN
    croma: float = NAN  # median per-sample margin
    croma_m: int = CROMA_M
    croma_worst: float = NAN
    croma_site_dominant: float = NAN  # share of samples with margin <= 0
    source: str = ""  # "croma <version>", or the fallback used
    ri_reason: str = ""
    mari_reason: str = ""
    croma_reason: str = ""


def robustness_metrics(
    embeddings: np.ndarray,
    labels: Sequence[object],
    sites: Sequence[object],
    groups: Sequence[object],
    group_name: str = "group",
    k_candidates: Sequence[int] = DEFAULT_K_CANDIDATES,
    m: int = CROMA_M,
) -> RobustnessMetrics:
    """croma's RI, MaRI and CRoMa of ``embeddings`` (N, D) with per-row class ``labels``, ``sites``
    and independence ``groups`` (named ``group_name`` in reasons, e.g. "slide"). k is chosen among
    the ``k_candidates`` smaller than the number of samples outside the largest group: when croma's
    neighbour search has to fetch every sample it leaves out the farthest, so a k equal to that number
    would not be met."""
    x = np.asarray(embeddings, dtype=np.float64)
    y, s, g = (np.asarray([str(v) for v in values]) for values in (labels, sites, groups))
    if x.ndim != 2 or not len(x) == len(y) == len(s) == len(g):
        raise ValueError("embeddings must be (N, D) with one label, site and group per row")
    n = len(x)
    reason = _unscoreable(y, s, g, group_name)
    ks = [] if reason else [int(k) for k in k_candidates if k < n - _largest_count(g)]
    if not reason and not ks:
        reason = f"too few samples outside each {group_name} for k = {min(k_candidates)}"
    if reason:
        return RobustnessMetrics(n, croma_m=m, ri_reason=reason, mari_reason=reason, croma_reason=reason)
    try:
        import croma
    except ImportError:
        return _knn_fallback(x, y, s, g, ks, m)
    import pandas as pd

    manifest = pd.DataFrame({"sample_id": np.arange(n).astype(str), "image_path": "", "label": y})
    manifest = manifest.assign(site=s, group_id=g)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # croma warns of low support; we report it
        result = RobustnessMetrics(n, croma_m=m, source=f"croma {croma.__version__}")
        result = _with_ri(result, croma, x, manifest, ks)
        result = _with_mari(result, croma, x, manifest, ks)
        result = _with_croma(result, croma, x, manifest, (y, s, g), m, group_name)
    return result


def _with_ri(
    result: RobustnessMetrics, croma: ModuleType, x: np.ndarray, manifest: pd.DataFrame, ks: list[int]
) -> RobustnessMetrics:
    try:
        ri = croma.RI.compute(x, manifest, confounder_column="site", k_candidates=ks)
    except (RuntimeError, ValueError) as exc:
        return replace(result, ri_reason=str(exc))
    if ri.support == 0:  # croma scores 0.5 here; no neighbour says anything either way
        return replace(result, k=ri.k, ri_support=0.0, ri_reason=NO_TYPED_NEIGHBOUR)
    return replace(result, k=ri.k, ri=ri.value, ri_support=ri.support, ri_worst=ri.ltm_alpha)


def _with_mari(
    result: RobustnessMetrics, croma: ModuleType, x: np.ndarray, manifest: pd.DataFrame, ks: list[int]
) -> RobustnessMetrics:
    try:
        mari = croma.MaRI.compute(x, manifest, confounder_column="site", k_candidates=ks)
    except (RuntimeError, ValueError) as exc:
        return replace(result, mari_reason=str(exc))
    k = result.k or mari.k  # the same k as RI's: both are chosen by k-NN balanced accuracy
    if mari.support == 0:
        return replace(result, k=k, mari_reason=NO_TYPED_NEIGHBOUR)
    return replace(result, k=k, mari=mari.value, mari_tau=mari.tau, mari_worst=mari.ltm_alpha)


def _with_croma(
    result: RobustnessMetrics,
    croma: ModuleType,
    x: np.ndarray,
    manifest: pd.DataFrame,
    classes_sites_groups: tuple[np.ndarray, np.ndarray, np.ndarray],
    m: int,
    group_name: str,
) -> RobustnessMetrics:
    so, os = _typed_candidates(*classes_sites_groups)
    if min(so.min(), os.min()) < m:
        return replace(
            result,
            croma_reason=(
                f"needs {m} samples of the same class from other sites and {m} of other classes from "
                f"the same site outside each sample's {group_name}; the fewest here are "
                f"{so.min()} and {os.min()}"
            ),
        )
    try:
        margin = croma.CRoMa.compute(x, manifest, confounder_column="site", m=m, alpha=TAIL_ALPHA)
    except (RuntimeError, ValueError) as exc:
        return replace(result, croma_reason=str(exc))
    return replace(result, croma=margin.value, croma_worst=margin.ltm_alpha, croma_site_dominant=margin.f0)


def _knn_fallback(
    x: np.ndarray, y: np.ndarray, s: np.ndarray, g: np.ndarray, ks: list[int], m: int
) -> RobustnessMetrics:
    counts = robustness_index(x, y, s, groups=list(g), candidates=ks)
    ri = counts.robustness_index
    return RobustnessMetrics(
        len(x),
        k=counts.k,
        ri=ri,
        croma_m=m,
        source="k-NN (croma not installed)",
        ri_reason=NO_TYPED_NEIGHBOUR if ri != ri else "",
        mari_reason=NOT_INSTALLED,
        croma_reason=NOT_INSTALLED,
    )


def _unscoreable(y: np.ndarray, s: np.ndarray, g: np.ndarray, group_name: str) -> str:
    """Why no neighbour metric can be computed at all ('' when one can)."""
    if len(y) < 2:
        return f"{len(y)} sample(s); need at least two"
    if len(set(s)) < 2:
        return "one site only; robustness needs at least two sites"
    if len(set(y)) < 2:
        return "one class only; robustness needs at least two classes"
    if _largest_count(g) >= len(g):
        return f"all samples are of one {group_name}"
    return ""


def _largest_count(values: np.ndarray) -> int:
    return int(np.unique(values, return_counts=True)[1].max())


def _shared(*codes: np.ndarray) -> np.ndarray:
    """For each row, how many rows share all of its ``codes`` (itself included)."""
    _, inverse, counts = np.unique(np.column_stack(codes), axis=0, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()]


def _typed_candidates(y: np.ndarray, s: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many rows outside its group are of its class from another site (SO) and of
    another class from its site (OS)."""
    yc, sc, gc = (np.unique(v, return_inverse=True)[1] for v in (y, s, g))
    ys, ysg = _shared(yc, sc), _shared(yc, sc, gc)
    so = (_shared(yc) - ys) - (_shared(yc, gc) - ysg)
    os = (_shared(sc) - ys) - (_shared(sc, gc) - ysg)
    return so, os


TABLE_COLUMNS = (
    "level", "metric", "value", "worst_10pct", "k", "m", "tau", "support", "site_dominant", "n_samples",
    "source", "reason",
)  # fmt: skip


def table_rows(level: str, metrics: RobustnessMetrics) -> list[list[object]]:
    """One row per metric (RI, MaRI, CRoMa) of ``metrics`` under :data:`TABLE_COLUMNS`."""
    m = metrics
    return [
        [level, "RI", m.ri, m.ri_worst, m.k, "", "", m.ri_support, "", m.n_samples, m.source, m.ri_reason],
        [
            level, "MaRI", m.mari, m.mari_worst, m.k, "", m.mari_tau, m.ri_support, "", m.n_samples,
            m.source, m.mari_reason,
        ],
        [
            level, "CRoMa", m.croma, m.croma_worst, "", m.croma_m, "", "", m.croma_site_dominant,
            m.n_samples, m.source, m.croma_reason,
        ],
    ]  # fmt: skip
