"""croma's RI, MaRI and CRoMa through our adapter, on embeddings whose site and biology signals are
known; and our own k-NN robustness index against croma's at the same k."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from napari_wsirobust.diagnostics import RobustnessMetrics, robustness_index, robustness_metrics

pytest.importorskip("croma")


def _embeddings(
    site_shift: float, biology_shift: float, n_slides: int = 24, tiles: int = 10, seed: int = 1
) -> tuple[np.ndarray, list[str], list[str], list[str]]:
    """Tiles of slide i (label i % 2, site (i // 2) % 3): N(0, 0.1) in 8-D plus a shift along dimension
    0 per label and along dimension 1 + site per site, and a common offset along dimension 5."""
    rng = np.random.default_rng(seed)
    x, labels, sites, slides = [], [], [], []
    for i in range(n_slides):
        label, site = i % 2, (i // 2) % 3
        t = rng.normal(0, 0.1, (tiles, 8))
        t[:, 0] += biology_shift * label
        t[:, 1 + site] += site_shift
        t[:, 5] += 1.0
        x.append(t)
        labels += [f"class{label}"] * tiles
        sites += ["ABC"[site]] * tiles
        slides += [f"s{i}"] * tiles
    return np.concatenate(x), labels, sites, slides


# (site shift, biology shift): none, weak and strong site signal against the biology
SIGNALS = [(0.0, 3.0), (0.2, 1.0), (0.5, 1.0), (0.2, 0.2), (1.0, 0.5), (3.0, 0.3), (3.0, 0.0)]


@pytest.mark.parametrize(("site_shift", "biology_shift"), SIGNALS)
def test_our_robustness_index_equals_croma_at_the_same_k(site_shift: float, biology_shift: float) -> None:
    x, labels, sites, slides = _embeddings(site_shift, biology_shift)
    for k in (1, 3, 5, 11, 31):
        ours = robustness_index(x, labels, sites, k=k, groups=slides)
        theirs = robustness_metrics(x, labels, sites, slides, "slide", k_candidates=(k,))
        assert theirs.k == k and theirs.source.startswith("croma")
        if ours.so + ours.os == 0:  # no neighbour says anything: both undefined
            assert np.isnan(ours.robustness_index) and np.isnan(theirs.ri) and theirs.ri_support == 0.0
        else:
            assert theirs.ri == pytest.approx(ours.robustness_index, abs=1e-4)


def test_k_stays_below_the_samples_outside_the_largest_group() -> None:
    # 12 slides of one tile: 11 neighbours outside each slide. croma fetching all 12 rows (self
    # included) reaches only 10 of them, so k = 11 is refused rather than scored on fewer neighbours
    x, labels, sites, slides = _embeddings(0.2, 0.2, n_slides=12, tiles=1)
    for k in range(1, 11):
        ours = robustness_index(x, labels, sites, k=k, groups=slides).robustness_index
        assert robustness_metrics(x, labels, sites, slides, k_candidates=(k,)).ri == pytest.approx(ours)
    refused = robustness_metrics(x, labels, sites, slides, "slide", k_candidates=(11,))
    assert np.isnan(refused.ri) and refused.k == 0 and "for k = 11" in refused.ri_reason


def test_biology_led_neighbourhoods_score_high_site_led_low() -> None:
    clean = robustness_metrics(*_embeddings(0.0, 3.0), "slide")
    weak = robustness_metrics(*_embeddings(0.2, 0.2), "slide")
    site = robustness_metrics(*_embeddings(3.0, 0.0), "slide")
    assert clean.ri > 0.99 and clean.mari > 0.99 and clean.croma > 0.9 and clean.croma_site_dominant == 0.0
    assert site.ri < 0.01 and site.mari < 0.01 and site.croma < -0.9 and site.croma_site_dominant == 1.0
    assert site.ri < weak.ri < clean.ri and site.mari < weak.mari < clean.mari
    assert site.croma < weak.croma < clean.croma
    assert 0.3 < weak.croma_site_dominant < 0.7  # nearly balanced signals: about half the tiles
    # the worst 10 % sit at or below the pooled value; with weak signals far below it
    for m in (clean, weak, site):
        assert m.ri_worst <= m.ri + 1e-9 and m.mari_worst <= m.mari + 1e-9 and m.croma_worst <= m.croma
        assert m.n_samples == 240 and 0.0 < m.ri_support <= 1.0 and m.mari_tau > 0.0
        assert not (m.ri_reason or m.mari_reason or m.croma_reason)
    assert weak.ri_worst < 0.3 < weak.ri and weak.croma_worst < -0.2


def test_too_small_inputs_give_nan_with_a_reason() -> None:
    x, labels, sites, slides = _embeddings(0.0, 3.0)
    one_site = robustness_metrics(x, labels, ["A"] * len(x), slides, "slide")
    assert np.isnan([one_site.ri, one_site.mari, one_site.croma]).all()
    assert "one site" in one_site.ri_reason and "one site" in one_site.croma_reason and one_site.k == 0
    single = robustness_metrics(x[:1], labels[:1], sites[:1], slides[:1], "slide")
    assert np.isnan(single.ri) and "need at least two" in single.ri_reason and single.n_samples == 1
    one_class = robustness_metrics(x, ["a"] * len(x), sites, slides, "slide")
    assert np.isnan(one_class.ri) and "one class" in one_class.mari_reason
    # four slides of 10 tiles: 30 tiles outside each slide, so k = 31 is too many
    few = robustness_metrics(x[:40], labels[:40], sites[:40], slides[:40], "slide", k_candidates=(31,))
    assert np.isnan(few.ri) and "too few samples outside each slide" in few.ri_reason
    # CRoMa needs 5 same-class tiles from other sites (SO) and 5 other-class tiles from the same site
    # (OS) outside each tile's slide. Two tiles from each of slides 0-5 (label, site: 0A 1A 0B 1B 0C
    # 1C): each tile has 4 SO (two slides) and 2 OS (one slide); RI is still defined
    pick = np.concatenate([np.arange(10 * i, 10 * i + 2) for i in range(6)])
    sparse = robustness_metrics(
        x[pick], [labels[i] for i in pick], [sites[i] for i in pick], [slides[i] for i in pick], "slide"
    )
    assert not np.isnan(sparse.ri) and np.isnan(sparse.croma) and np.isnan(sparse.croma_worst)
    assert (
        "fewest here are 4 and 2" in sparse.croma_reason
        and "outside each sample's slide" in sparse.croma_reason
    )


def test_a_croma_error_is_caught_as_a_reason() -> None:
    # a collapsed embedding: every SO and OS distance is 0, so croma refuses the margin
    # (d_OS + d_SO = 0) and raises; RI and MaRI stay defined
    _, labels, sites, slides = _embeddings(0.0, 0.0)
    collapsed = robustness_metrics(np.ones((len(labels), 4)), labels, sites, slides, "slide")
    assert np.isnan(collapsed.croma) and "zero margin denominator" in collapsed.croma_reason
    assert 0.0 <= collapsed.ri <= 1.0 and 0.0 <= collapsed.mari <= 1.0


def test_without_croma_our_index_stands_in(monkeypatch: pytest.MonkeyPatch) -> None:
    x, labels, sites, slides = _embeddings(0.2, 0.2)
    with_croma = robustness_metrics(x, labels, sites, slides, "slide", k_candidates=(11,))
    monkeypatch.setitem(sys.modules, "croma", None)  # as if croma were not installed
    without = robustness_metrics(x, labels, sites, slides, "slide", k_candidates=(11,))
    assert isinstance(without, RobustnessMetrics) and without.source.startswith("k-NN")
    assert without.k == 11 and without.ri == pytest.approx(with_croma.ri, abs=1e-4)
    assert np.isnan(without.mari) and "not installed" in without.mari_reason
    assert np.isnan(without.croma) and "not installed" in without.croma_reason


def test_mismatched_inputs_are_refused() -> None:
    x, labels, sites, slides = _embeddings(0.0, 3.0)
    with pytest.raises(ValueError, match="one label, site and group per row"):
        robustness_metrics(x, labels[:-1], sites, slides)
