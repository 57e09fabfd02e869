"""Robustness losses on hand-made tensors whose value or gradient direction is known."""

from __future__ import annotations

import math

import numpy as np
import torch

from napari_wsirobust.mil import SiteStandardiser
from napari_wsirobust.mil.losses import (
    SiteAdversary,
    adversarial_site_loss,
    aem_loss,
    attention_entropy,
    consistency_loss,
    gradient_reversal,
    paired_scan_loss,
    representation_alignment_loss,
    site_moment_loss,
    technical_contrastive_loss,
)


def test_gradient_reversal_flips_the_site_gradient() -> None:
    z = torch.randn(4, 8, requires_grad=True)
    torch.manual_seed(0)
    adversary = SiteAdversary(8, n_sites=3, strength=0.5)
    sites = torch.tensor([0, 1, 2, 0])
    adversarial_site_loss(adversary, z, sites).backward()
    reversed_grad = z.grad.clone()
    z.grad = None
    plain = torch.nn.functional.cross_entropy(adversary.head(z), sites)  # same head, no reversal
    plain.backward()
    torch.testing.assert_close(reversed_grad, -0.5 * z.grad)
    x = torch.randn(3)
    torch.testing.assert_close(gradient_reversal(x, 2.0), x)


def test_contrastive_loss_is_lower_when_same_label_cross_site_pairs_are_closer() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    sites = torch.tensor([0, 1, 0, 1])
    # biology-aligned: same label together regardless of site
    biology = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    # site-aligned: same site together regardless of label (the shortcut)
    shortcut = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9]])
    good = technical_contrastive_loss(biology, labels, sites)
    bad = technical_contrastive_loss(shortcut, labels, sites)
    assert good < bad
    # gradient on the shortcut embedding moves anchor 0 towards its cross-site positive (index 1)
    z = shortcut.clone().requires_grad_(True)
    technical_contrastive_loss(z, labels, sites).backward()
    step = shortcut[0] - 0.1 * z.grad[0]
    before = torch.nn.functional.cosine_similarity(shortcut[0], shortcut[1], dim=0)
    after = torch.nn.functional.cosine_similarity(step, shortcut[1], dim=0)
    assert after > before


def test_contrastive_loss_without_cross_site_positives_is_zero_with_a_graph() -> None:
    z = torch.randn(3, 4, requires_grad=True)
    loss = technical_contrastive_loss(z, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]))
    assert loss.item() == 0.0
    loss.backward()  # no error: still part of the graph


def test_consistency_loss_zero_for_identical_views_and_pulls_views_together() -> None:
    logits = torch.tensor([[2.0, -1.0], [0.5, 0.5]])
    attention = torch.tensor([[0.7, 0.3], [0.5, 0.5]])
    assert consistency_loss(logits, logits, attention, attention).item() < 1e-7
    swapped_logits = torch.tensor([[-1.0, 2.0], [0.5, 0.5]], requires_grad=True)
    swapped_attention = torch.tensor([[0.2, 0.8], [0.5, 0.5]])
    loss = consistency_loss(logits, swapped_logits, attention, swapped_attention)
    expected_tv = 0.5 * (0.5 + 0.5) / 2  # bag 0 differs by 0.5 + 0.5, bag 1 not at all; mean of 2
    assert loss.item() > expected_tv
    loss.backward()
    # gradient descent moves the swapped view's logits towards the original's (class 0 up)
    assert swapped_logits.grad[0, 0] < 0 < swapped_logits.grad[0, 1]


def test_alignment_loss_is_scale_free_and_pulls_the_view_onto_the_original() -> None:
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert representation_alignment_loss(z, z.clone()).item() == 0.0
    swapped = torch.tensor([[0.0, 1.0], [0.0, 2.0]], requires_grad=True)
    loss = representation_alignment_loss(z, swapped)
    # ||d||^2: bag 0 = 2, bag 1 = 0 -> mean 1; scale = (1 + 4 + 1 + 4) / 2 / 2 = 2.5
    assert math.isclose(loss.item(), 1.0 / 2.5, rel_tol=1e-6)
    assert math.isclose(representation_alignment_loss(10 * z, 10 * swapped).item(), loss.item(), rel_tol=1e-6)
    loss.backward()
    assert swapped.grad[0, 0] < 0 < swapped.grad[0, 1]  # descent moves bag 0's view towards (1, 0)


def test_site_moment_loss_value_scale_and_gradient() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    sites = torch.tensor([0, 1, 0, 1])
    # label 0: site means (2, 0) and (0, 0), label mean (1, 0): between = 1 + 1 = 2; label 1: equal
    z = torch.tensor([[2.0, 1.0], [0.0, 1.0], [1.0, 1.0], [1.0, 1.0]], requires_grad=True)
    loss = site_moment_loss(z, labels, sites)
    assert math.isclose(loss.item(), 2.0 / (5 + 1 + 2 + 2), rel_tol=1e-6)
    assert math.isclose(site_moment_loss(3 * z, labels, sites).item(), loss.item(), rel_tol=1e-6)
    loss.backward()
    assert z.grad[0, 0] > 0 > z.grad[1, 0]  # descent moves the two sites' slides of label 0 together
    same = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 3.0], [0.0, 3.0]])
    assert site_moment_loss(same, labels, sites).item() == 0.0  # site means equal within each label
    # a label seen at one site only contributes nothing (site and label cannot be told apart there)
    assert site_moment_loss(z.detach(), labels, torch.tensor([0, 0, 1, 1])).item() == 0.0


def test_paired_scan_loss_value_scale_and_gradient() -> None:
    groups = torch.tensor([0, 0, 1, 1])  # two patients, each scanned twice
    z = torch.tensor([[2.0, 0.0], [0.0, 0.0], [5.0, 1.0], [5.0, 1.0]], requires_grad=True)
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.5, 0.5]])
    # dimension 0: spread within patient 0's scans 1 + 1 = 2, all spread 1 + 9 + 4 + 4 = 18; dimension
    # 1: none within, 1 in all; eps = 0.01 x mean(18, 1); probabilities: 2 x (0.5^2 + 0.5^2) over 4
    eps = 0.01 * (18 + 1) / 2
    loss = paired_scan_loss(z, p, groups)
    assert math.isclose(loss.item(), (2 / (18 + eps) + 0 / (1 + eps)) / 2 + 1 / 4, rel_tol=1e-6)
    assert math.isclose(paired_scan_loss(3 * z, p, groups).item(), loss.item(), rel_tol=1e-6)  # scale-free
    loss.backward()
    assert z.grad[0, 0] > 0 > z.grad[1, 0]  # descent moves patient 0's two scans together
    # per dimension: dimension 1 carries all the scanner spread; halving it (not the tissue-driven
    # dimension 0) changes its term only through eps, where a norm-scaled loss would drop by ~4x
    full = torch.tensor([[0.0, 2.0], [0.0, 0.0], [6.0, 3.0], [6.0, 3.0]])
    half = full * torch.tensor([1.0, 0.5])
    ratio = paired_scan_loss(half, p, groups) / paired_scan_loss(full, p, groups)
    assert 0.95 < ratio.item() <= 1.0
    assert paired_scan_loss(z.detach(), p, torch.tensor([0, 1, 2, 3])).item() == 0.0  # no re-scans


def test_aem_prefers_spread_attention_and_ignores_padding() -> None:
    uniform = torch.full((1, 4), 0.25)
    peaked = torch.tensor([[0.97, 0.01, 0.01, 0.01]])
    assert math.isclose(attention_entropy(uniform).item(), math.log(4), rel_tol=1e-6)
    assert aem_loss(uniform) < aem_loss(peaked)
    padded = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])
    assert math.isclose(attention_entropy(padded, mask).item(), math.log(2), rel_tol=1e-6)


def test_site_standardisation_removes_site_offsets() -> None:
    rng = np.random.default_rng(0)
    bags = [rng.normal(3.0, 2.0, (50, 4)) for _ in range(3)] + [
        rng.normal(-1.0, 0.5, (50, 4)) for _ in range(3)
    ]
    sites = ["A"] * 3 + ["B"] * 3
    norm = SiteStandardiser().fit(bags, sites)
    for site in ("A", "B"):
        tiles = np.concatenate([norm.transform(b, s) for b, s in zip(bags, sites) if s == site])
        np.testing.assert_allclose(tiles.mean(0), 0, atol=1e-5)
        np.testing.assert_allclose(tiles.std(0), 1, atol=1e-3)
    new_site = rng.normal(10.0, 1.0, (100, 4))
    np.testing.assert_allclose(norm.transform(new_site, "C").mean(0), 0, atol=1e-5)
