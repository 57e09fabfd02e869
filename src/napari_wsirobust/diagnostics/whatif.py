"""Scanner-swap what-if on a scope of a slide: would the prediction change on another scanner? (no Qt)

The scope is analysed as usual (:func:`~napari_wsirobust.analysis.analyse_region`); then its tiles
are re-rendered into each target colour profile (:func:`~napari_wsirobust.stain.transfer_tile`, from
the slide's own estimated profile; blurred to the target's sharpness,
:func:`~napari_wsirobust.stain.matching_blur_sigma`, calibrated on up to 16 of the scope's tiles;
re-compressed at the target's JPEG quality when known), re-embedded
and the head re-run. A head trained on harmonised tiles (:mod:`napari_wsirobust.stain.harmonise`)
gets each swapped tile harmonised in turn, from the target profile into the head's reference, as a
real scan from that profile would be. Per profile and tile:

- drift = 1 - cosine similarity between the original and the swapped tile embedding,
- attention change = swapped minus original attention percentile rank (-1..1),
- flipped = the tile's instance class (arg-max of its class scores) changed,

and per profile the slide-level prediction. The spread is the range, over the original and all
profiles, of the probability of the originally predicted class.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..analysis import (
    AnalysisProgress,
    AnalysisRequest,
    RegionAnalysis,
    Resources,
    analyse_region,
    percentile_rank,
    relay,
)
from ..errors import InputError
from ..features import embed_tiles
from ..io import open_slide
from ..mil import BagPrediction
from ..progress import FINISHED, PROFILE, ProgressCallback, report
from ..stain import (
    BLUR_SAMPLE_TILES,  # the same blur calibration sample as harmonisation
    StainProfile,
    estimate_slide_profile,
    matching_blur_sigma,
    transfer_tile,
)
from ..tiling import read_tile


@dataclass(frozen=True)
class ProfileOutcome:
    name: str
    prediction: BagPrediction
    drift: np.ndarray  # (N,)
    attention_change: np.ndarray  # (N,)
    flipped: np.ndarray  # (N,) bool


@dataclass
class WhatIfResult:
    base: RegionAnalysis
    source_profile: StainProfile
    outcomes: list[ProfileOutcome]

    @property
    def spread(self) -> float:
        k = self.base.prediction.label_index
        values = [
            self.base.prediction.probabilities[k],
            *(o.prediction.probabilities[k] for o in self.outcomes),
        ]
        return float(max(values) - min(values))

    def table(self) -> list[dict[str, object]]:
        """One row per profile (the original first): prediction, class probabilities, tile changes."""
        names = self.base.label_names
        rows: list[dict[str, object]] = []
        for name, pred, drift, flips in [("original", self.base.prediction, None, None)] + [
            (o.name, o.prediction, o.drift, o.flipped) for o in self.outcomes
        ]:
            row: dict[str, object] = {"profile": name, "prediction": names[pred.label_index]}
            row.update({f"p_{n}": float(p) for n, p in zip(names, pred.probabilities)})
            row["mean_drift"] = float(np.mean(drift)) if drift is not None else 0.0
            row["flipped_tiles"] = int(np.sum(flips)) if flips is not None else 0
            rows.append(row)
        return rows


def _cosine_drift(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    num = (a * b).sum(axis=1)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return 1.0 - num / den


def scanner_whatif(
    request: AnalysisRequest,
    profiles: Mapping[str, StainProfile],
    resources: Resources | None = None,
    source: StainProfile | None = None,
) -> Generator[AnalysisProgress, None, WhatIfResult]:
    """Analyse the scope, then re-render, re-embed and re-predict it under each target profile."""
    if not profiles:
        raise InputError("no target profiles: estimate them from a cohort (wsirobust profiles) first")
    resources = resources or Resources()
    base = yield from analyse_region(request, resources)
    assert base.features is not None
    head = resources.head(request.model_dir)
    encoder = resources.encoder(base.encoder_name, request.encoder_weights, request.allow_hub, request.device)
    if source is None:
        yield AnalysisProgress("profiling", message="estimating the slide's colour profile")
        source = estimate_slide_profile(request.slide_path, mpp=request.mpp)
    base_rank = base.attention_rank()
    base_inst = base.prediction.instance_probabilities
    outcomes: list[ProfileOutcome] = []
    n = len(base.grid)
    with open_slide(request.slide_path, mpp=request.mpp, color=head.config.color) as slide:
        picks = np.linspace(0, n - 1, min(n, BLUR_SAMPLE_TILES)).astype(int)
        sample = np.concatenate([read_tile(slide, base.grid, int(i))[..., :3] for i in picks], axis=0)
        harmonise = head.harmonisation()
        reference = harmonise.reference if harmonise is not None else None
        for p, (name, target) in enumerate(profiles.items()):
            sigma = matching_blur_sigma(sample, source, target)
            # a head trained on harmonised tiles sees the swapped tile harmonised, as it would see a
            # real scan from that profile: re-rendered from the target profile into its reference
            sigma_ref = 0.0
            if reference is not None:
                swapped = transfer_tile(sample, source, target, sigma, target.jpeg_quality)
                sigma_ref = matching_blur_sigma(swapped, target, reference)

            def swap(
                tile: np.ndarray,
                _row: int,
                _col: int,
                target: StainProfile = target,
                sigma: float = sigma,
                sigma_ref: float = sigma_ref,
            ) -> np.ndarray:
                out = transfer_tile(tile, source, target, sigma, target.jpeg_quality)
                if reference is None:
                    return out
                return transfer_tile(
                    out, target, reference, blur_sigma_px=sigma_ref, jpeg_quality=reference.jpeg_quality
                )

            embedding = embed_tiles(slide, base.grid, encoder, batch_size=request.batch_size, transform=swap)
            features = yield from relay(
                embedding,
                lambda progress, p=p, name=name: AnalysisProgress(
                    "swapping",
                    p * n + progress.done,
                    len(profiles) * n,
                    f"profile {name}: {progress.done}/{n} tiles re-rendered and embedded",
                ),
            )
            prediction = head.predict(features, request.site)
            inst = prediction.instance_probabilities
            flipped = (
                inst.argmax(axis=1) != base_inst.argmax(axis=1)
                if inst is not None and base_inst is not None
                else np.zeros(n, bool)
            )
            outcomes.append(
                ProfileOutcome(
                    name,
                    prediction,
                    _cosine_drift(base.features, features),
                    percentile_rank(prediction.attention) - base_rank,
                    flipped,
                )
            )
    return WhatIfResult(base, source, outcomes)


def load_profiles(path: str | Path) -> dict[str, StainProfile]:
    """Site profiles from a JSON file written by :func:`save_profiles`."""
    import json

    try:
        data = json.loads(Path(path).read_text())
        return {
            name: StainProfile(
                **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}  # type: ignore[arg-type]
            )
            for name, fields in data["profiles"].items()
        }
    except OSError as exc:
        raise InputError(f"cannot read the profiles file {path}: {exc.strerror or exc}") from exc
    except (ValueError, KeyError, TypeError, AttributeError) as exc:  # not JSON, or not ours
        raise InputError(f"{path} is not a profiles file written by wsirobust: {exc}") from exc


def save_profiles(profiles: Mapping[str, StainProfile], path: str | Path) -> Path:
    """Write site profiles as JSON (the cohort's scanner profiles)."""
    import json

    from .._atomic import atomic_write_text

    payload = {
        "format": "wsirobust-profiles",
        "version": 1,
        "profiles": {k: v.to_dict() for k, v in profiles.items()},
    }
    return atomic_write_text(path, json.dumps(payload, indent=2))


def estimate_cohort_profiles(
    cohort_csv: str | Path,
    out: str | Path,
    mpp: float | None = None,
    progress: ProgressCallback | None = None,
) -> Generator[AnalysisProgress, None, Path]:
    """Profile every slide of a cohort CSV, pool them per site and save the JSON; yields per slide.
    ``mpp``: the pixel size (µm/px) of the slides whose ``mpp`` cell is blank (None: their files').
    ``progress`` gets a ``profile`` record as each slide starts and the run's ``finished`` count."""
    from ..cohort import read_cohort_table
    from ..stain import combine_profiles

    table = read_cohort_table(cohort_csv, default_mpp=mpp)
    by_site: dict[str, list[StainProfile]] = {}
    report(progress, "", FINISHED, 0, len(table))
    for i, row in enumerate(table.rows, 1):
        name = Path(row.path).name
        report(progress, name, PROFILE, message=f"estimating the colour profile ({row.site})")
        by_site.setdefault(row.site, []).append(estimate_slide_profile(row.path, seed=i, mpp=row.mpp))
        report(progress, name, FINISHED, i, len(table), message="profiled")
        yield AnalysisProgress("profiling", i, len(table), f"profiled {Path(row.path).name} ({row.site})")
    return save_profiles({site: combine_profiles(p) for site, p in sorted(by_site.items())}, out)
