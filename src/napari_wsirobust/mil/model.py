"""Gated attention MIL (Ilse et al. 2018) with masks for variable bag sizes.

For tile embeddings x_k, h_k = ReLU(W x_k) (projection), attention logits
s_k = w^T (tanh(V h_k) * sigmoid(U h_k)), a = softmax over the bag's real tiles (padding gets exactly
zero weight), slide representation z = sum_k a_k h_k, slide logits = C z. An optional instance
classifier gives per-tile class logits C_inst h_k.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class MILOutput:
    """Everything one forward pass produces; shapes for a batch of B bags of N tiles, C classes."""

    logits: torch.Tensor  # (B, C)
    attention: torch.Tensor  # (B, N), zero on padding, sums to 1 per bag
    representation: torch.Tensor  # (B, H) attention-pooled slide representation
    instance_logits: torch.Tensor | None  # (B, N, C) or None


class GatedAttentionMIL(nn.Module):
    """``forward(x: (B, N, D), mask: (B, N) bool | None, return_attention=False) -> logits (B, C)``
    (and attention (B, N) when asked); :meth:`forward_details` also gives the representation and
    instance logits."""

    def __init__(
        self,
        in_dim: int,
        n_classes: int = 2,
        hidden_dim: int = 256,
        attention_dim: int = 128,
        dropout: float = 0.25,
        instance_classifier: bool = True,
    ) -> None:
        super().__init__()
        if in_dim < 1 or n_classes < 2:
            raise ValueError(f"need in_dim >= 1 and n_classes >= 2, got {in_dim}, {n_classes}")
        self.in_dim, self.n_classes, self.hidden_dim = in_dim, n_classes, hidden_dim
        self.projection = nn.Sequential(nn.Linear(in_dim, hidden_dim), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden_dim, attention_dim)
        self.attention_u = nn.Linear(hidden_dim, attention_dim)
        self.attention_w = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden_dim, n_classes)
        self.instance_classifier = nn.Linear(hidden_dim, n_classes) if instance_classifier else None

    def forward_details(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, train_attention: bool | torch.Tensor = True
    ) -> MILOutput:
        """Logits, attention, slide representation and instance logits of bags ``x`` (B, N, D) with
        ``mask`` (B, N). Where ``train_attention`` is False (for every bag, or per bag as a (B,) bool
        tensor) the representation is pooled with the attention detached: a loss on it then trains the
        projection and classifier, never where the head looks."""
        if x.ndim != 3 or x.shape[-1] != self.in_dim:
            raise ValueError(f"expected features of shape (B, N, {self.in_dim}), got {tuple(x.shape)}")
        if mask is None:
            mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        elif mask.shape != x.shape[:2]:
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match bags {tuple(x.shape[:2])}")
        mask = mask.bool()
        if not mask.any(dim=1).all():
            raise ValueError("every bag needs at least one tile (a bag is entirely masked)")
        h = self.projection(x)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h)))
        scores = scores.squeeze(-1).masked_fill(~mask, float("-inf"))
        attention = torch.softmax(scores, dim=1)
        if isinstance(train_attention, torch.Tensor):
            weights = torch.where(train_attention.bool()[:, None], attention, attention.detach())
        else:
            weights = attention if train_attention else attention.detach()
        representation = torch.einsum("bn,bnh->bh", weights, h)
        logits = self.classifier(representation)
        instance = self.instance_classifier(h) if self.instance_classifier is not None else None
        return MILOutput(logits, attention, representation, instance)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, return_attention: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        out = self.forward_details(x, mask)
        return (out.logits, out.attention) if return_attention else out.logits


def parameter_layout(instance_classifier: bool = True) -> dict[str, tuple[str | int, ...]]:
    """Every tensor of :class:`GatedAttentionMIL`'s state dict, in order, with each axis named by the
    constructor argument that sizes it (or a constant): what a saved head must hold, known without
    building it. A test compares it with built models, so it cannot drift from ``__init__``."""
    layout: dict[str, tuple[str | int, ...]] = {
        "projection.0.weight": ("hidden_dim", "in_dim"),
        "projection.0.bias": ("hidden_dim",),
        "attention_v.weight": ("attention_dim", "hidden_dim"),
        "attention_v.bias": ("attention_dim",),
        "attention_u.weight": ("attention_dim", "hidden_dim"),
        "attention_u.bias": ("attention_dim",),
        "attention_w.weight": (1, "attention_dim"),
        "attention_w.bias": (1,),
        "classifier.weight": ("n_classes", "hidden_dim"),
        "classifier.bias": ("n_classes",),
    }
    if instance_classifier:
        layout["instance_classifier.weight"] = ("n_classes", "hidden_dim")
        layout["instance_classifier.bias"] = ("n_classes",)
    return layout


def parameter_shapes(
    sizes: Mapping[str, int], instance_classifier: bool = True
) -> dict[str, tuple[int, ...]]:
    """The shape of every state-dict tensor of a head with ``sizes`` (``in_dim``, ``n_classes``,
    ``hidden_dim``, ``attention_dim``), computed from :func:`parameter_layout` (nothing allocated)."""
    return {
        name: tuple(axis if isinstance(axis, int) else sizes[axis] for axis in axes)
        for name, axes in parameter_layout(instance_classifier).items()
    }
