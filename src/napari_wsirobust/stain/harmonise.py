"""Colour and optics harmonisation: every tile re-rendered into one reference scanner profile before
it is embedded (no Qt).

The frozen encoder sees the scanner (stain colour, glass tint, focus, JPEG) in every tile; a head
trained on its features can only remove what it sees in training. Harmonisation removes most of it
at the input, for every slide alike, training and prediction: each slide's own profile is estimated
(:func:`~napari_wsirobust.stain.estimate_slide_profile`: glass from the overview, Macenko
stain vectors, concentrations and sharpness from 48 seeded random tissue tiles of the whole slide), the
Gaussian blur that brings it down to the reference's sharpness is calibrated on 16 evenly spaced tissue
tiles of the whole slide (:func:`~napari_wsirobust.stain.matching_blur_sigma`; 0 when the
slide is already softer), and every tile is transferred into the reference profile
(:func:`~napari_wsirobust.stain.transfer_tile`), blurred by that amount and re-compressed at
the reference's JPEG quality. The per-slide plan depends on the whole slide only, never on the scope
being analysed, so a tile's harmonised features are the same whichever scope embedded it (they are
cached under their own key).

The reference is chosen from the training cohort's site profiles as the *least sharp* site (blur can be
added, not removed), with the *lowest* JPEG quality among the sites (compression artefacts can be
added, not removed): :func:`choose_reference`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import WsiRobustError
from .augment import TileTransform
from .profile import StainProfile

if TYPE_CHECKING:
    from ..io import WSI
    from ..tiling import TissueMask

ALGORITHM_VERSION = 1
BLUR_SAMPLE_TILES = 16
PROFILE_TILES = 48


class HarmonisationError(WsiRobustError, ValueError):
    """A harmonisation reference cannot be built or read."""


@dataclass(frozen=True)
class SlidePlan:
    """How one slide's tiles are harmonised: its estimated profile and the blur added (pixels)."""

    source: StainProfile
    blur_sigma_px: float

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source.to_dict(), "blur_sigma_px": self.blur_sigma_px}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SlidePlan:
        """Read what :meth:`to_dict` wrote; a malformed entry raises :class:`HarmonisationError`."""
        source = data.get("source")
        if not isinstance(source, Mapping):
            raise HarmonisationError("slide plan has no 'source' profile")
        try:
            return cls(profile_from_dict(source), float(data["blur_sigma_px"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise HarmonisationError(f"slide plan is malformed: {exc}") from exc


@dataclass(frozen=True)
class Harmonisation:
    """Re-render tiles into ``reference`` (a scanner profile) before embedding; ``site`` names where the
    reference came from (shown in messages and saved with a model)."""

    reference: StainProfile
    site: str = ""

    def identity(self) -> str:
        """Stable id of the reference and the algorithm's version (part of the feature cache key)."""
        payload = json.dumps(
            {"reference": self.reference.to_dict(), "algorithm": ALGORITHM_VERSION}, sort_keys=True
        )
        return "harmonise-" + hashlib.sha256(payload.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "reference": self.reference.to_dict(), "algorithm": ALGORITHM_VERSION}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Harmonisation:
        """Read what :meth:`to_dict` wrote; a malformed entry is refused with what is wrong."""
        if data.get("algorithm", ALGORITHM_VERSION) > ALGORITHM_VERSION:
            raise HarmonisationError(
                f"harmonisation algorithm {data['algorithm']} is newer than this plugin understands "
                f"({ALGORITHM_VERSION}); update the plugin"
            )
        ref = data.get("reference")
        if not isinstance(ref, Mapping):
            raise HarmonisationError("harmonisation entry has no 'reference' profile")
        return cls(profile_from_dict(ref, "harmonisation reference"), str(data.get("site", "")))

    def plan_for(self, slide: WSI, tissue: TissueMask | None = None) -> SlidePlan:
        """Estimate the slide's plan (from its tissue mask ``tissue``, detected when None). Callers
        that see a slide more than once keep the plan: see ``features.SlidePrepStore``."""
        try:
            return _plan_slide(slide, self.reference, tissue)
        except HarmonisationError:
            raise
        except ValueError as exc:
            raise HarmonisationError(
                f"{slide.path.name}: its colour profile cannot be estimated for harmonisation ({exc})"
            ) from exc

    def for_slide(self, slide: WSI, plan: SlidePlan | None = None) -> TileTransform:
        """The transform for every tile of ``slide`` (``transform(tile, row, col)`` -> tile), with
        the slide's ``plan`` (estimated here when None)."""
        from .transfer import transfer_tile

        plan = plan if plan is not None else self.plan_for(slide)
        reference = self.reference

        def transform(tile: np.ndarray, _row: int, _col: int) -> np.ndarray:
            return transfer_tile(
                tile[..., :3],
                plan.source,
                reference,
                blur_sigma_px=plan.blur_sigma_px,
                jpeg_quality=reference.jpeg_quality,
            )

        return transform


def profile_from_dict(data: Mapping[str, Any], what: str = "profile") -> StainProfile:
    """A :class:`StainProfile` from its ``to_dict``; what is missing or malformed is named."""
    needed = {f.name for f in fields(StainProfile) if f.name != "jpeg_quality"}
    missing = sorted(needed - set(data))
    if missing:
        raise HarmonisationError(f"{what} lacks {', '.join(missing)}")
    try:
        return StainProfile(
            hematoxylin_od=_floats(data["hematoxylin_od"], 3),
            eosin_od=_floats(data["eosin_od"], 3),
            background_rgb=_floats(data["background_rgb"], 3),
            concentration_p50=_floats(data["concentration_p50"], 2),
            concentration_p99=_floats(data["concentration_p99"], 2),
            sharpness=float(data["sharpness"]),
            n_pixels=int(data["n_pixels"]),
            jpeg_quality=None if data.get("jpeg_quality") is None else int(data["jpeg_quality"]),
        )
    except (TypeError, ValueError) as exc:
        raise HarmonisationError(f"{what} is malformed: {exc}") from exc


def _floats(values: Any, n: int) -> tuple[float, ...]:
    out = tuple(float(v) for v in values)
    if len(out) != n:
        raise ValueError(f"expected {n} numbers, got {len(out)}")
    return out


def _plan_slide(slide: WSI, reference: StainProfile, tissue: TissueMask | None) -> SlidePlan:
    from ..tiling import TilingConfig, detect_tissue, make_tile_grid, read_readable_tiles
    from .profile import estimate_open_slide_profile
    from .transfer import matching_blur_sigma

    tissue = tissue if tissue is not None else detect_tissue(slide)
    grid = make_tile_grid(slide, TilingConfig(), tissue=tissue)
    source = estimate_open_slide_profile(slide, n_tiles=PROFILE_TILES, grid=grid)
    picks = np.unique(np.linspace(0, len(grid) - 1, min(len(grid), BLUR_SAMPLE_TILES)).astype(int))
    readable = read_readable_tiles(slide, grid, picks)
    if not readable:
        raise ValueError("every sampled tissue tile overlaps damaged file tiles")
    sample = np.concatenate([t[..., :3] for t in readable], axis=0)
    return SlidePlan(source, matching_blur_sigma(sample, source, reference))


def choose_reference(site_profiles: Mapping[str, StainProfile], site: str | None = None) -> Harmonisation:
    """The reference for a cohort: ``site``'s profile when named, else the least sharp site's; in both
    cases with the lowest JPEG quality found among the sites."""
    if not site_profiles:
        raise HarmonisationError("no site profiles to choose a harmonisation reference from")
    if site is not None and site not in site_profiles:
        known = ", ".join(sorted(site_profiles))
        raise HarmonisationError(f"no site {site!r} in the cohort to harmonise to (sites: {known})")
    name = site if site is not None else min(site_profiles, key=lambda s: site_profiles[s].sharpness)
    qualities = [p.jpeg_quality for p in site_profiles.values() if p.jpeg_quality is not None]
    reference = replace(site_profiles[name], jpeg_quality=min(qualities) if qualities else None)
    return Harmonisation(reference, name)


def training_site_profiles(
    slides_by_site: Mapping[str, Sequence[str]],
    per_site: int = 8,
    slide_mpp: Mapping[str, float] | None = None,
) -> dict[str, StainProfile]:
    """Each training site's colour profile from up to ``per_site`` of its slides (in the order given;
    ``slide_mpp``: pixel size overrides by path): what a model saves to choose its harmonisation
    reference and to warn about slides unlike every training site."""
    from .profile import ProfileError, estimate_site_profiles

    chosen = {name: list(paths)[:per_site] for name, paths in slides_by_site.items()}
    try:
        return estimate_site_profiles(chosen, PROFILE_TILES, slide_mpp)
    except ProfileError as exc:
        raise HarmonisationError(f"{exc} (needed to profile the training sites)") from exc


def reference_for_slides(
    slides_by_site: Mapping[str, Sequence[str]],
    site: str | None = None,
    per_site: int = 8,
    slide_mpp: Mapping[str, float] | None = None,
) -> Harmonisation:
    """Profile up to ``per_site`` slides of each site (:func:`training_site_profiles`) and choose the
    reference (:func:`choose_reference`; ``site`` "auto" or None: the least sharp site)."""
    profiles = training_site_profiles(slides_by_site, per_site, slide_mpp)
    return choose_reference(profiles, None if site in (None, "auto") else site)
