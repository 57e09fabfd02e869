"""How unlike every training site a slide's scanner is: a distance between colour profiles (no Qt).

A slide's estimated :class:`~napari_wsirobust.stain.StainProfile` is compared with each training site's
profile (saved with the model) property by property, each difference divided by a tolerance: the
haematoxylin and eosin stain directions (degrees), the glass colour (largest channel difference, grey
levels), the staining intensity (the 99th-percentile concentration of each stain, as a log ratio), the
focus (the sharpness, as a log ratio) and the JPEG quality (when both are known). The distance to a
site is the largest of these scaled differences, so 1.0 means "one property is off by a full
tolerance"; the slide's distance is the one to its nearest site. The tolerances and the threshold are
calibrated on the unseen-scanner benchmark (``benchmarks/bench_unseen_scanner.py``): slides from the
training sites stay below the threshold, the unseen scanners' slides go beyond it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .profile import StainProfile, angle_degrees

# property -> tolerance (see the module docstring for the units)
TOLERANCES: dict[str, float] = {
    "haematoxylin direction": 6.0,
    "eosin direction": 6.0,
    "glass colour": 12.0,
    "haematoxylin intensity": math.log(1.5),
    "eosin intensity": math.log(1.5),
    "sharpness": math.log(2.0),
    "JPEG quality": 15.0,
}
UNLIKE_THRESHOLD = 1.0


@dataclass(frozen=True)
class ScannerCheck:
    """A slide's profile against the training sites': its distance to the nearest site, which site that
    is, and the property that differs most from it."""

    distance: float
    nearest_site: str
    differs_most_in: str
    threshold: float = UNLIKE_THRESHOLD

    @property
    def unlike_training(self) -> bool:
        return self.distance > self.threshold

    def warning(self) -> str:
        """What to tell the user; empty when the slide is like a training site."""
        if not self.unlike_training:
            return ""
        return (
            f"scanner unlike every training site - nearest {self.nearest_site} (differs most in "
            f"{self.differs_most_in}); calls may shift"
        )


def scaled_differences(slide: StainProfile, site: StainProfile) -> dict[str, float]:
    """Property -> |difference| / tolerance between two profiles (JPEG quality only when both know it)."""

    def log_ratio(a: float, b: float) -> float:
        return abs(math.log(max(a, 1e-9) / max(b, 1e-9)))

    raw = {
        "haematoxylin direction": angle_degrees(slide.hematoxylin_od, site.hematoxylin_od),
        "eosin direction": angle_degrees(slide.eosin_od, site.eosin_od),
        "glass colour": float(np.max(np.abs(np.subtract(slide.background_rgb, site.background_rgb)))),
        "haematoxylin intensity": log_ratio(slide.concentration_p99[0], site.concentration_p99[0]),
        "eosin intensity": log_ratio(slide.concentration_p99[1], site.concentration_p99[1]),
        "sharpness": log_ratio(slide.sharpness, site.sharpness),
    }
    if slide.jpeg_quality is not None and site.jpeg_quality is not None:
        raw["JPEG quality"] = float(abs(slide.jpeg_quality - site.jpeg_quality))
    return {name: value / TOLERANCES[name] for name, value in raw.items()}


def check_scanner(
    slide: StainProfile, sites: Mapping[str, StainProfile], threshold: float = UNLIKE_THRESHOLD
) -> ScannerCheck:
    """The slide's :class:`ScannerCheck` against the training ``sites`` (at least one)."""
    if not sites:
        raise ValueError("no training site profiles to compare the slide with")
    per_site = {name: scaled_differences(slide, profile) for name, profile in sites.items()}
    nearest = min(per_site, key=lambda name: max(per_site[name].values()))
    differences = per_site[nearest]
    most = max(differences, key=lambda name: differences[name])
    return ScannerCheck(float(differences[most]), nearest, most, threshold)
