"""Per-site feature standardisation: the simple baseline the robustness losses must beat.

Each site's tile features are shifted and scaled to zero mean and unit variance per dimension,
x' = (x - mu_site) / sigma_site, removing first- and second-order site offsets. A site never seen
in training is standardised with its own statistics when enough tiles are given, otherwise with the
pooled training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class SiteStandardiser:
    """Fit on training bags grouped by site, then transform any bag of a known (or new) site."""

    eps: float = 1e-6
    min_tiles_for_new_site: int = 64
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    pooled: tuple[np.ndarray, np.ndarray] | None = None

    def fit(self, bags: list[np.ndarray], sites: list[str]) -> SiteStandardiser:
        if len(bags) != len(sites) or not bags:
            raise ValueError("need one site per bag and at least one bag")
        for site in sorted(set(sites)):
            tiles = np.concatenate([b for b, s in zip(bags, sites) if s == site])
            self.stats[site] = (tiles.mean(0), tiles.std(0) + self.eps)
        everything = np.concatenate(bags)
        self.pooled = (everything.mean(0), everything.std(0) + self.eps)
        return self

    def transform(self, bag: np.ndarray, site: str) -> np.ndarray:
        if self.pooled is None:
            raise RuntimeError("SiteStandardiser.fit must be called before transform")
        if site in self.stats:
            mean, std = self.stats[site]
        elif len(bag) >= self.min_tiles_for_new_site:
            mean, std = bag.mean(0), bag.std(0) + self.eps
        else:
            mean, std = self.pooled
        return ((bag - mean) / std).astype(np.float32)

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Statistics as named tensors (for the safetensors checkpoint)."""
        if self.pooled is None:
            raise RuntimeError("SiteStandardiser.fit must be called first")
        out = {"site_norm.pooled.mean": torch.from_numpy(self.pooled[0].astype(np.float32))}
        out["site_norm.pooled.std"] = torch.from_numpy(self.pooled[1].astype(np.float32))
        for site, (mean, std) in self.stats.items():
            out[f"site_norm.site.{site}.mean"] = torch.from_numpy(mean.astype(np.float32))
            out[f"site_norm.site.{site}.std"] = torch.from_numpy(std.astype(np.float32))
        return out

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> SiteStandardiser | None:
        """Inverse of :meth:`to_tensors`; None when the tensors hold no statistics."""
        if "site_norm.pooled.mean" not in tensors:
            return None
        out = cls()
        out.pooled = (tensors["site_norm.pooled.mean"].numpy(), tensors["site_norm.pooled.std"].numpy())
        prefix = "site_norm.site."
        for key in tensors:
            if key.startswith(prefix) and key.endswith(".mean"):
                site = key[len(prefix) : -len(".mean")]
                out.stats[site] = (tensors[key].numpy(), tensors[f"{prefix}{site}.std"].numpy())
        return out
