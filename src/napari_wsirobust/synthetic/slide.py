"""One synthetic slide = a tissue (biology) rendered by a scanner profile, written as a pyramidal
TIFF with its ground-truth masks beside it."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WsiRobustError
from ..progress import RENDER, ProgressCallback, report
from .profiles import ScannerProfile, get_profile
from .render import blur_margin_px, concentrations_to_rgb, noise_generator
from .tissue import TissueLayout, TissueSpec
from .writer import TILE, write_pyramid_from_bands


class GroundTruthError(WsiRobustError, FileNotFoundError):
    """A synthetic slide's ground-truth file is missing."""


GROUND_TRUTH_SUFFIX = ".gt.npz"
DESCRIPTION_KEY = "napari-wsirobust-synthetic"


@dataclass(frozen=True)
class SyntheticSlideSpec:
    """A tissue and the scanner profile that renders it."""

    tissue: TissueSpec
    profile: ScannerProfile

    @classmethod
    def make(cls, tissue: TissueSpec, profile: str | ScannerProfile) -> SyntheticSlideSpec:
        return cls(tissue=tissue, profile=get_profile(profile))

    def description(self) -> str:
        return json.dumps(
            {
                DESCRIPTION_KEY: 1,
                "tissue": self.tissue.to_dict(),
                "profile": self.profile.to_dict(),
            }
        )


def render_bands(spec: SyntheticSlideSpec) -> Iterator[np.ndarray]:
    """Level-0 RGB bands of ``TILE`` rows (the last may be shorter), top to bottom."""
    layout = TissueLayout(spec.tissue)
    yield from _bands_from_layout(spec, layout)


def _bands_from_layout(spec: SyntheticSlideSpec, layout: TissueLayout) -> Iterator[np.ndarray]:
    t = spec.tissue
    margin = blur_margin_px(spec.profile, t.mpp)
    for index, y0 in enumerate(range(0, t.height, TILE)):
        y1 = min(y0 + TILE, t.height)
        hema, eosin = layout.render_band(y0 - margin, y1 + margin)
        rng = noise_generator(t.seed, spec.profile, index)
        yield concentrations_to_rgb(hema, eosin, spec.profile, t.mpp, rng, margin)


def render_region(spec: SyntheticSlideSpec) -> np.ndarray:
    """The whole level-0 image in memory (only for small slides and tests)."""
    return np.concatenate(list(render_bands(spec)), axis=0)


@dataclass(frozen=True)
class SyntheticSlideResult:
    """Where a slide and its ground truth were written, with summary statistics."""

    slide_path: Path
    ground_truth_path: Path
    level_sizes: list[tuple[int, int]]
    tissue_fraction: float
    tumour_fraction_of_tissue: float


def write_synthetic_slide(
    spec: SyntheticSlideSpec, path: str | os.PathLike[str], progress: ProgressCallback | None = None
) -> SyntheticSlideResult:
    """Render ``spec`` to a pyramidal TIFF at ``path`` and its masks to ``<path>.gt.npz``.

    The ground-truth file holds ``tissue`` and ``tumour`` boolean masks on the layout grid, one cell
    per ``step_px`` level-0 pixels (cell (i, j) covers rows i*step..(i+1)*step), and the JSON spec.
    ``progress`` gets ``render`` records: the tissue layout, then the rows of level 0 rendered.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = spec.tissue
    report(progress, path.name, RENDER, 0, t.height, message="laying out the tissue")
    layout = TissueLayout(spec.tissue)
    start = time.perf_counter()

    def bands() -> Iterator[np.ndarray]:
        rows = 0
        for band in _bands_from_layout(spec, layout):
            rows += band.shape[0]
            report(progress, path.name, RENDER, rows, t.height, time.perf_counter() - start, "rendered")
            yield band

    sizes = write_pyramid_from_bands(
        path,
        bands(),
        width=t.width,
        height=t.height,
        mpp=t.mpp,
        jpeg_quality=spec.profile.jpeg_quality,
        description=spec.description(),
    )
    gt_path = ground_truth_path_for(path)
    tmp = gt_path.with_name(gt_path.name + ".partial.npz")
    np.savez_compressed(
        tmp,
        tissue=layout.tissue_mask,
        tumour=layout.tumour_mask,
        step_px=np.float64(layout.field_step),
        spec=np.array(spec.description()),
    )
    os.replace(tmp, gt_path)
    return SyntheticSlideResult(
        slide_path=path,
        ground_truth_path=gt_path,
        level_sizes=sizes,
        tissue_fraction=float(layout.tissue_mask.mean()),
        tumour_fraction_of_tissue=layout.tumour_fraction_of_tissue,
    )


def ground_truth_path_for(slide_path: str | os.PathLike[str]) -> Path:
    slide_path = Path(slide_path)
    return slide_path.with_name(slide_path.name + GROUND_TRUTH_SUFFIX)


@dataclass(frozen=True)
class GroundTruth:
    """Ground-truth masks of a synthetic slide on the layout grid."""

    tissue: np.ndarray
    tumour: np.ndarray
    step_px: float
    spec: dict

    def tumour_fraction_in(self, x0: float, y0: float, x1: float, y1: float) -> float:
        """Fraction of the level-0 rectangle [x0, x1) x [y0, y1) that is tumour (cell accuracy)."""
        return self._fraction(self.tumour, x0, y0, x1, y1)

    def tissue_fraction_in(self, x0: float, y0: float, x1: float, y1: float) -> float:
        return self._fraction(self.tissue, x0, y0, x1, y1)

    def _fraction(self, mask: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> float:
        s = self.step_px
        ia, ib = int(np.floor(y0 / s)), int(np.ceil(y1 / s))
        ja, jb = int(np.floor(x0 / s)), int(np.ceil(x1 / s))
        window = mask[max(ia, 0) : max(ib, 0), max(ja, 0) : max(jb, 0)]
        return float(window.mean()) if window.size else 0.0


def load_ground_truth(slide_path: str | os.PathLike[str]) -> GroundTruth:
    """Read the ``.gt.npz`` written beside a synthetic slide (no pickle involved)."""
    gt_path = ground_truth_path_for(slide_path)
    if not gt_path.exists():
        raise GroundTruthError(f"no ground truth for {slide_path}: expected {gt_path}")
    return read_ground_truth_file(gt_path)


def read_ground_truth_file(gt_path: str | os.PathLike[str]) -> GroundTruth:
    """Read a ``.gt.npz`` ground-truth file itself (no pickle involved)."""
    with np.load(gt_path, allow_pickle=False) as data:
        return GroundTruth(
            tissue=data["tissue"].astype(bool),
            tumour=data["tumour"].astype(bool),
            step_px=float(data["step_px"]),
            spec=json.loads(str(data["spec"])),
        )
