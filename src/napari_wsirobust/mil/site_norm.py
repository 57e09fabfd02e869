"""Per-site feature standardisation: the simple baseline the robustness losses must beat.

Each site's tile features are shifted and scaled to zero mean and unit variance per dimension,
x' = (x - mu_site) / sigma_site, removing first- and second-order site offsets. A site never seen
in training is standardised with its own statistics when enough tiles are given, otherwise with the
pooled training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
