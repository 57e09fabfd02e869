"""Scanner/site profiles: how a slide's stain concentrations become RGB pixels.

A profile is the *technical* half of a synthetic slide. The same tissue (biology) rendered with two
profiles differs only in colour, sharpness, noise and compression, exactly the signal a robust model
must ignore.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError

# Ruifrok & Johnston optical-density vectors (unit length) for haematoxylin and eosin.
HEMATOXYLIN_OD = (0.650, 0.704, 0.286)
EOSIN_OD = (0.072, 0.990, 0.105)


def _unit(v: tuple[float, float, float]) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=np.float64)
    a = a / np.linalg.norm(a)
    return (float(a[0]), float(a[1]), float(a[2]))


@dataclass(frozen=True)
class ScannerProfile:
    """Technical rendering parameters of one scanner/site.

    Attributes
    ----------
    name : short identifier used in cohort tables (``"A"``, ``"B"``...).
    description : what the profile imitates.
    hematoxylin_od, eosin_od : stain optical-density vectors (normalised to unit length).
    hematoxylin_scale, eosin_scale : multipliers of the stain concentrations (staining intensity).
    background_rgb : illumination I0 per channel (the colour of glass), 0-255.
    gamma : display gamma applied after Beer-Lambert (>1 brightens mid-tones).
    blur_sigma_um : Gaussian focus blur, in micrometres (converted to pixels with the slide's MPP).
    noise_sigma : Gaussian sensor noise, in 8-bit grey levels.
    jpeg_quality : JPEG quality of the written tiles.
    """

    name: str
    description: str
    hematoxylin_od: tuple[float, float, float] = HEMATOXYLIN_OD
    eosin_od: tuple[float, float, float] = EOSIN_OD
    hematoxylin_scale: float = 1.0
    eosin_scale: float = 1.0
    background_rgb: tuple[float, float, float] = (242.0, 242.0, 242.0)
    gamma: float = 1.0
    blur_sigma_um: float = 0.0
    noise_sigma: float = 1.0
    jpeg_quality: int = 90
    extra: dict[str, float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hematoxylin_od", _unit(self.hematoxylin_od))
        object.__setattr__(self, "eosin_od", _unit(self.eosin_od))
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.gamma <= 0:
            raise InputError(f"gamma must be positive, got {self.gamma}")

    @property
    def stain_matrix(self) -> np.ndarray:
        """(2, 3) matrix of the scaled H and E optical-density vectors."""
        return np.array(
            [
                np.asarray(self.hematoxylin_od) * self.hematoxylin_scale,
                np.asarray(self.eosin_od) * self.eosin_scale,
            ],
            dtype=np.float32,
        )

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable description (ground truth for the profile estimator)."""
        return {
            "name": self.name,
            "description": self.description,
            "hematoxylin_od": list(self.hematoxylin_od),
            "eosin_od": list(self.eosin_od),
            "hematoxylin_scale": self.hematoxylin_scale,
            "eosin_scale": self.eosin_scale,
            "background_rgb": list(self.background_rgb),
            "gamma": self.gamma,
            "blur_sigma_um": self.blur_sigma_um,
            "noise_sigma": self.noise_sigma,
            "jpeg_quality": self.jpeg_quality,
        }


SCANNER_PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            name="A",
            description="cool, crisp scanner: bluish haematoxylin, pale eosin, sharp, high JPEG quality",
            hematoxylin_od=(0.60, 0.72, 0.34),
            eosin_od=(0.09, 0.97, 0.22),
            hematoxylin_scale=1.05,
            eosin_scale=0.80,
            background_rgb=(236.0, 240.0, 250.0),
            gamma=1.0,
            blur_sigma_um=0.0,
            noise_sigma=1.5,
            jpeg_quality=92,
        ),
        ScannerProfile(
            name="B",
            description="warm, strongly stained site: purple haematoxylin, deep pink eosin, slight blur",
            hematoxylin_od=(0.70, 0.68, 0.22),
            eosin_od=(0.05, 0.99, 0.05),
            hematoxylin_scale=1.20,
            eosin_scale=1.25,
            background_rgb=(250.0, 238.0, 232.0),
            gamma=0.9,
            blur_sigma_um=0.35,
            noise_sigma=2.5,
            jpeg_quality=80,
        ),
        ScannerProfile(
            name="C",
            description="faded, soft scanner: weak staining, yellowish glass, visible blur and JPEG",
            hematoxylin_od=(0.64, 0.66, 0.38),
            eosin_od=(0.16, 0.94, 0.30),
            hematoxylin_scale=0.80,
            eosin_scale=0.95,
            background_rgb=(244.0, 242.0, 226.0),
            gamma=1.15,
            blur_sigma_um=0.6,
            noise_sigma=3.5,
            jpeg_quality=65,
        ),
    )
}


# Scanners no training cohort uses: each lies outside every training profile's range above in several
# parameters at once (training: H scale 0.8-1.2, E scale 0.8-1.25, glass 226-250, gamma 0.9-1.15,
# blur 0-0.6 µm, noise 1.5-3.5, JPEG 65-92). They render test slides of the unseen-scanner benchmark.
UNSEEN_PROFILES: dict[str, ScannerProfile] = {
    p.name: p
    for p in (
        ScannerProfile(
            name="U1",
            description="far, soft scanner: strong blur, heavy eosin, low JPEG quality, grey glass",
            hematoxylin_od=(0.66, 0.70, 0.27),
            eosin_od=(0.12, 0.96, 0.25),
            hematoxylin_scale=1.0,
            eosin_scale=1.6,
            background_rgb=(232.0, 232.0, 232.0),
            gamma=1.0,
            blur_sigma_um=1.0,
            noise_sigma=3.0,
            jpeg_quality=45,
        ),
        ScannerProfile(
            name="U2",
            description="dark, blue scanner: heavy blue-black haematoxylin, cold glass, low gamma, noisy",
            hematoxylin_od=(0.52, 0.76, 0.39),
            eosin_od=(0.04, 0.995, 0.09),
            hematoxylin_scale=1.5,
            eosin_scale=1.0,
            background_rgb=(226.0, 236.0, 252.0),
            gamma=0.75,
            blur_sigma_um=0.2,
            noise_sigma=5.0,
            jpeg_quality=85,
        ),
        ScannerProfile(
            name="U3",
            description="washed-out scanner: pale staining, green-yellow glass, high gamma, blur and JPEG",
            hematoxylin_od=(0.72, 0.64, 0.27),
            eosin_od=(0.22, 0.90, 0.38),
            hematoxylin_scale=0.6,
            eosin_scale=0.65,
            background_rgb=(238.0, 244.0, 212.0),
            gamma=1.35,
            blur_sigma_um=0.8,
            noise_sigma=2.0,
            jpeg_quality=55,
        ),
    )
}


def get_profile(name: str | ScannerProfile) -> ScannerProfile:
    """Look up a scanner profile by name, training or unseen (or pass a profile through)."""
    if isinstance(name, ScannerProfile):
        return name
    known = {**SCANNER_PROFILES, **UNSEEN_PROFILES}
    try:
        return known[name]
    except KeyError:
        valid = ", ".join(sorted(known))
        raise InputError(f"unknown scanner profile {name!r}; valid profiles: {valid}") from None
