"""Robustness losses for training a MIL head on frozen foundation-model features.

Each needs only the cohort's scanner/site column. Notation: z_i slide representation of bag i
(L2-normalised where stated), y_i label, s_i site, a_i attention over the bag's tiles, p_i = softmax of
the slide logits, tau a temperature.

- Technical-invariance contrastive loss (supervised InfoNCE over sites):
  P(i) = {j != i : y_j = y_i, s_j != s_i} (same biology, other site),
  N(i) = {j : s_j = s_i, y_j != y_i} (same site, other biology),
  L = mean_i -log( sum_{p in P(i)} e^{z_i.z_p/tau} / (sum_{p in P(i)} e^{z_i.z_p/tau}
                                                        + sum_{n in N(i)} e^{z_i.z_n/tau}) ),
  over anchors with non-empty P(i). It pulls same-label slides of different scanners together and
  pushes same-scanner slides of different labels apart, so the representation stops encoding site.
- Adversarial site head: site logits = g(GRL_lambda(z)) (conditional: g([GRL_lambda(z), onehot(y)]));
  L = CE(site logits, s). The gradient
  reversal layer is the identity forward and multiplies the gradient by -lambda backward (Ganin &
  Lempitsky 2015), so the head learns to predict the site while the representation learns to hide it.
- Scanner-consistency loss, for a bag and its scanner-swapped view (p', a'):
  L = 1/2 (KL(p || p') + KL(p' || p)) + beta * 1/2 sum_k |a_k - a'_k|
  (symmetric KL of predictions plus the total-variation distance of attention).
- Representation alignment, for a bag and its scanner-swapped view (z'):
  L = mean_i ||z_i - z'_i||^2 / (mean_j (||z_j||^2 + ||z'_j||^2) / 2), the whole slide representation
  (not only the prediction) made to ignore the scanner change; scale-free so the head cannot shrink z
  to satisfy it.
- Site-moment matching, over a reference set of slides (the training slides, up to 64 every step):
  within each label l that has slides from two or more sites, mu_l the label's mean representation
  and mu_{l,s} that of its n_{l,s} slides from site s,
  L = sum_l sum_s n_{l,s} ||mu_{l,s} - mu_l||^2 / sum_i ||z_i||^2:
  zero when every site's slides of a label have the same mean representation. Divided by the summed
  squared norms (not the variance, which the head could inflate with site-unrelated spread) so it is
  scale-free. A direct, closed-form penalty on the site offsets a linear probe uses, where an
  adversary can be fooled.
- Paired-scan consistency, over the training slides of patients scanned at two or more sites (the
  same tissue re-scanned: z_i, p_i of slide i of patient g, zbar_g and pbar_g the patient's means,
  zbar the mean over all these slides), per dimension d of the representation:
  W_d = sum_g sum_{i in g} (z_id - zbar_gd)^2 (spread between one tissue's scans),
  T_d = sum_i (z_id - zbar_d)^2 (all spread), eps = 0.01 mean_d T_d,
  L = mean_d W_d / (T_d + eps) + mean_i ||p_i - pbar_g(i)||^2:
  in every dimension, the share of the variance that is the scanner rather than the tissue, plus
  the spread of the prediction. Per dimension because a linear probe standardises every dimension,
  so a low-variance dimension that still separates the scanners matters as much as a large one (a
  version dividing by the total squared norm left the probe at 0.81 on the benchmark); eps damps
  dimensions with under ~1 % of the average dimension's variance (dead units). It learns
  from real scanner differences, where the view-based terms only see simulated ones (the family of
  losses of Henriksen et al. 2026, which use scans of the same tissue on several scanners).
  The trainer pools the unlabelled reference slides with their attention detached
  (``forward_details(train_attention=...)``): there the term trains the projection and classifier,
  not where the head looks. Letting it move the attention on unlabelled re-scans made the head attend
  to whatever tells the re-scanned patients apart instead of the tumour (shortcut benchmark with a
  K = 4 reference set: localisation AUC down to 0.40, shifted AUC 0.80 +- 0.14; see README). On
  labelled re-scans the attention stays trained: there it helped (site probe 0.54 against 0.64 with
  it detached, K = 1 re-scans, 5 seeds).
- Attention-entropy maximisation (AEM, Zhang et al. 2024): L = -H(a) with
  H(a) = -sum_k a_k log a_k over the real tiles; added with weight lambda (0.1 in the authors' example),
  it penalises attention collapsing onto a few tiles.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:  # type: ignore[override]
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.strength * grad, None


def gradient_reversal(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient multiplied by ``-strength`` backward."""
    return _GradientReversal.apply(x, strength)


class SiteAdversary(nn.Module):
    """Predicts the site from the slide representation through a gradient reversal layer.

    With ``n_classes`` > 0 the adversary is *conditional* (as in CDANN, Li et al. 2018): it also sees
    the one-hot label, so when site and label are confounded it cannot predict the site from the
    label information the representation must keep, and only site information beyond the label is
    removed."""

    def __init__(
        self, in_dim: int, n_sites: int, hidden_dim: int = 64, strength: float = 1.0, n_classes: int = 0
    ) -> None:
        super().__init__()
        self.strength = strength
        self.n_classes = n_classes
        self.head = nn.Sequential(
            nn.Linear(in_dim + n_classes, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, n_sites)
        )

    def forward(self, representation: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        z = gradient_reversal(representation, self.strength)
        if self.n_classes:
            if labels is None:
                raise ValueError("a conditional site adversary needs the labels")
            z = torch.cat([z, F.one_hot(labels, self.n_classes).to(z.dtype)], dim=-1)
        return self.head(z)


def adversarial_site_loss(
    adversary: SiteAdversary,
    representation: torch.Tensor,
    sites: torch.Tensor,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of the adversary's site prediction (minimised by both, through the GRL)."""
    return F.cross_entropy(adversary(representation, labels), sites)


def technical_contrastive_loss(
    representation: torch.Tensor, labels: torch.Tensor, sites: torch.Tensor, temperature: float = 0.2
) -> torch.Tensor:
    """Supervised InfoNCE with cross-site positives and same-site negatives (see module docstring)."""
    z = F.normalize(representation, dim=-1)
    sim = z @ z.T / temperature
    same_label = labels[:, None] == labels[None, :]
    same_site = sites[:, None] == sites[None, :]
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    positives = same_label & ~same_site & ~eye
    negatives = same_site & ~same_label
    valid = positives.any(dim=1)
    if not valid.any():
        return representation.sum() * 0.0  # nothing to contrast in this batch; keeps the graph
    neg_inf = torch.finfo(sim.dtype).min
    pos = torch.logsumexp(sim.masked_fill(~positives, neg_inf), dim=1)
    both = torch.logsumexp(sim.masked_fill(~(positives | negatives), neg_inf), dim=1)
    return (both - pos)[valid].mean()


def consistency_loss(
    logits: torch.Tensor,
    logits_swapped: torch.Tensor,
    attention: torch.Tensor,
    attention_swapped: torch.Tensor,
    attention_weight: float = 1.0,
) -> torch.Tensor:
    """Symmetric KL of predictions plus ``attention_weight`` x total variation of attention."""
    log_p, log_q = F.log_softmax(logits, dim=-1), F.log_softmax(logits_swapped, dim=-1)
    sym_kl = 0.5 * (
        F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")
        + F.kl_div(log_p, log_q, log_target=True, reduction="batchmean")
    )
    tv = 0.5 * (attention - attention_swapped).abs().sum(dim=1).mean()
    return sym_kl + attention_weight * tv


def attention_entropy(attention: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean entropy H(a) of the bags' attention (padding, with a = 0, contributes nothing)."""
    a = attention.clamp_min(1e-12)
    terms = -(attention * a.log())
    if mask is not None:
        terms = terms * mask
    return terms.sum(dim=1).mean()


def aem_loss(attention: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Attention-entropy maximisation term: -H(a) (add with a positive weight)."""
    return -attention_entropy(attention, mask)


def representation_alignment_loss(representation: torch.Tensor, swapped: torch.Tensor) -> torch.Tensor:
    """Scale-free squared distance between a bag's slide representation and its scanner-swapped view's:
    mean_i ||z_i - z'_i||^2 / (mean_j (||z_j||^2 + ||z'_j||^2) / 2)."""
    scale = 0.5 * (representation.pow(2).sum(-1) + swapped.pow(2).sum(-1)).mean().clamp_min(1e-8)
    return (representation - swapped).pow(2).sum(-1).mean() / scale


def site_moment_loss(representation: torch.Tensor, labels: torch.Tensor, sites: torch.Tensor) -> torch.Tensor:
    """Within-label between-site spread of the site means of ``representation`` (B, H), relative to
    its mean squared norm (see module docstring); 0 when no label has slides from two sites."""
    between = representation.new_zeros(())
    for label in torch.unique(labels):
        z = representation[labels == label]
        s = sites[labels == label]
        site_values = torch.unique(s)
        if len(site_values) < 2:
            continue
        centred = z - z.mean(dim=0)
        for site in site_values:
            group = centred[s == site]
            between = between + len(group) * (group.mean(dim=0) ** 2).sum()
    return between / (representation**2).sum().clamp_min(1e-8)


def paired_scan_loss(
    representation: torch.Tensor, probabilities: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Per dimension, the share of the representation's spread that lies between one group's scans,
    averaged over dimensions, plus the spread of the predicted probabilities around each group's mean
    (a group is one patient's scans; see module docstring). Groups of one slide add nothing to the
    numerators; with no group of two or more the loss is 0."""
    within = representation.new_zeros(representation.shape[1])
    prediction = representation.new_zeros(())
    for group in torch.unique(groups):
        members = groups == group
        if int(members.sum()) < 2:
            continue
        z = representation[members]
        p = probabilities[members]
        within = within + ((z - z.mean(dim=0)) ** 2).sum(dim=0)
        prediction = prediction + ((p - p.mean(dim=0)) ** 2).sum()
    total = ((representation - representation.mean(dim=0)) ** 2).sum(dim=0)
    eps = 0.01 * total.mean() + 1e-8
    return (within / (total + eps)).mean() + prediction / len(groups)
