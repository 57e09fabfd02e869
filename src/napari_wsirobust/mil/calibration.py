"""Post-hoc calibration of a head's slide probabilities: a temperature and per-class offsets fitted on the
validation slides (no Qt).

The robust losses keep the head's *ranking* of slides across scanners, but squeeze its logits: tumour and
normal slides end up near p = 0.5 on every scanner, so calls at the default threshold flip and the
probabilities are under-confident (the unseen-scanner benchmark, BENCHMARKS.md). Calibration rescales the
logits as ``z / T + b`` (``b[0] = 0``), the multi-class form of Platt scaling: for two classes, a scale and a
shift of the log-odds, so the ranking (and the AUC) is unchanged and only the probabilities and the calls
move. Fitted by cross-entropy on the validation slides with Platt's smoothed targets (the true class gets
``(n + 1) / (n + 2)`` for a class with n validation slides), which keeps the fit finite when the
validation slides are perfectly separated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass(frozen=True)
class Calibration:
    """``softmax(log_p / temperature + bias)`` of a head's probabilities ``p`` (the same as rescaling
    its logits: softmax ignores a constant per slide)."""

    temperature: float
    bias: tuple[float, ...]
    n_slides: int = 0  # validation slides it was fitted on

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of (C,) or (N, C) ``probabilities``."""
        logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None))
        z = logp / self.temperature + np.asarray(self.bias)
        z -= z.max(axis=-1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "bias": list(self.bias), "n_slides": self.n_slides}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        temperature = float(data["temperature"])
        if not np.isfinite(temperature) or temperature <= 0:
            raise ValueError(f"calibration temperature must be positive, got {temperature}")
        bias = tuple(float(b) for b in data["bias"])
        if not all(np.isfinite(bias)):
            raise ValueError("calibration offsets must be finite")
        return cls(temperature, bias, int(data.get("n_slides", 0)))


def fit_calibration(probabilities: np.ndarray, labels: Sequence[int], steps: int = 300) -> Calibration | None:
    """The calibration of (N, C) ``probabilities`` of slides with ``labels`` (None when a class has no
    slide: its offset could not be fitted)."""
    probs = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n_classes = probs.shape[1]
    counts = np.bincount(y, minlength=n_classes)
    if len(y) == 0 or (counts == 0).any():
        return None
    true_share = (counts[y] + 1.0) / (counts[y] + 2.0)  # Platt's targets
    targets = np.tile(((1 - true_share) / (n_classes - 1))[:, None], (1, n_classes))
    targets[np.arange(len(y)), y] = true_share
    logp = torch.from_numpy(np.log(np.clip(probs, 1e-12, None)))
    target = torch.from_numpy(targets)
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    offsets = torch.zeros(n_classes - 1, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t, offsets], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        bias = torch.cat([torch.zeros(1, dtype=torch.float64), offsets])
        z = logp / torch.exp(log_t) + bias
        value = -(target * torch.log_softmax(z, -1)).sum(-1).mean()
        value.backward()
        return value

    optimiser.step(loss)
    temperature = float(torch.exp(log_t).detach())
    bias = (0.0, *(float(b) for b in offsets.detach()))
    if not np.isfinite(temperature) or not all(np.isfinite(bias)):
        return None
    return Calibration(temperature, bias, len(y))
