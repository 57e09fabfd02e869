"""The *biology* half of a synthetic slide: tissue layout, tumour regions and nuclei.

Everything here is in stain-concentration space (haematoxylin and eosin optical densities before the
scanner's stain vectors are applied), so one tissue can be rendered by any scanner profile. All random
draws come from generators seeded by ``TissueSpec.seed`` and a fixed key per purpose and per block, so a
region renders identically whatever band or process renders it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import cached_property

import numpy as np

from ..errors import InputError
from .fields import fibre_texture, row_chunks, sample_rows, smooth_noise, soft_threshold

FIELD_STEP_UM = 8.0  # physical size of one cell of the low-resolution layout fields
FIBRE_STEP_UM = 2.0  # physical size of one cell of the stroma texture field
NUCLEUS_BLOCK_PX = 256  # nuclei are drawn per block of level-0 pixels, each with its own generator

# Nucleus populations: density per µm², radius range µm, elongation, irregularity, H concentration.
NORMAL_NUCLEI = {
    "density": 1 / 170.0,
    "radius": (2.3, 3.3),
    "elong": (1.0, 2.2),
    "irreg": (0.0, 0.06),
    "conc": (0.50, 0.75),
}
TUMOUR_NUCLEI = {
    "density": 1 / 95.0,
    "radius": (3.4, 5.2),
    "elong": (1.0, 1.7),
    "irreg": (0.10, 0.30),
    "conc": (0.80, 1.10),
}


@dataclass(frozen=True)
class TissueSpec:
    """Biology of one synthetic slide.

    ``seed`` fixes the tissue layout and nuclei; ``tumour`` adds tumour regions covering roughly
    ``tumour_fraction`` of the tissue. ``width``/``height`` are level-0 pixels at ``mpp`` µm/px.
    """

    seed: int
    tumour: bool
    width: int = 2048
    height: int = 2048
    mpp: float = 0.5
    tissue_coverage: float = 0.55
    tumour_fraction: float = 0.3
    atypia: float = 1.0  # 0: tumour nuclei look normal, 1: fully atypical (the difficulty knob)

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise InputError(f"slide must be at least 64x64 pixels, got {self.width}x{self.height}")
        if not 0.05 <= self.mpp <= 10:
            raise InputError(f"mpp must be within 0.05..10 µm/px, got {self.mpp}")
        if not 0.05 <= self.tissue_coverage <= 0.95:
            raise InputError("tissue_coverage must be within 0.05..0.95")
        if not 0.0 < self.tumour_fraction <= 0.9:
            raise InputError("tumour_fraction must be within (0, 0.9]")
        if not 0.0 < self.atypia <= 1.0:
            raise InputError("atypia must be within (0, 1]")

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def tumour_nuclei(atypia: float) -> dict[str, object]:
    """Tumour nucleus population ``atypia`` of the way from normal to fully atypical."""
    out: dict[str, object] = {}
    for key, normal in NORMAL_NUCLEI.items():
        tumour = TUMOUR_NUCLEI[key]
        if isinstance(normal, tuple):
            out[key] = tuple(n + atypia * (t - n) for n, t in zip(normal, tumour))  # type: ignore[arg-type]
        else:
            out[key] = normal + atypia * (tumour - normal)  # type: ignore[operator]
    return out


def _quantile_threshold(field: np.ndarray, keep_fraction: float) -> float:
    return float(np.quantile(field, 1.0 - keep_fraction))


class TissueLayout:
    """Low-resolution fields of one tissue and its nuclei, rendered band by band on demand."""

    def __init__(self, spec: TissueSpec) -> None:
        self.spec = spec
        self.field_step = FIELD_STEP_UM / spec.mpp  # level-0 px per field cell
        self.fibre_step = FIBRE_STEP_UM / spec.mpp
        fh = max(2, int(np.ceil(spec.height / self.field_step)))
        fw = max(2, int(np.ceil(spec.width / self.field_step)))
        rng = np.random.default_rng([spec.seed, 0])
        self.tissue_field = self._tissue_field(rng, (fh, fw))
        self.tissue_mask = self.tissue_field > 0.5
        self.lumen_field = self._lumen_field(rng, (fh, fw))
        self.tumour_field = self._tumour_field(rng, (fh, fw))
        self.tumour_mask = (self.tumour_field > 0.5) & self.tissue_mask
        self.eosin_field = np.clip(0.30 + 0.07 * smooth_noise(rng, (fh, fw), 4.0), 0.12, 0.5)
        bh = max(2, int(np.ceil(spec.height / self.fibre_step)))
        bw = max(2, int(np.ceil(spec.width / self.fibre_step)))
        self.fibre_field = fibre_texture(rng, (bh, bw))

    # -- layout fields -------------------------------------------------------------------------
    def _tissue_field(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Soft tissue indicator: >0.5 inside tissue. Large smooth blobs kept away from the edges."""
        fh, fw = shape
        blob = smooth_noise(rng, shape, max(fh, fw) / 10.0)
        yy, xx = np.mgrid[0:fh, 0:fw].astype(np.float32)
        cy, cx = (fh - 1) / 2, (fw - 1) / 2
        radial = ((yy - cy) / (fh / 2)) ** 2 + ((xx - cx) / (fw / 2)) ** 2
        field = blob - 1.6 * radial
        thr = _quantile_threshold(field, self.spec.tissue_coverage)
        edge = smooth_noise(rng, shape, 1.5) * 0.15  # ragged border
        return (0.5 + 0.6 * (field - thr) + edge).astype(np.float32)

    def _lumen_field(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Soft indicator of small empty spaces (lumens, fat) inside the tissue."""
        noise = smooth_noise(rng, shape, 1.5)
        return soft_threshold(noise, 2.1, 1.5)

    def _tumour_field(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        """Soft tumour indicator (>0.5 inside tumour); all zeros for a normal slide.

        The draws happen for normal slides too, so the random streams after it stay aligned.
        """
        noise = smooth_noise(rng, shape, max(shape) / 14.0)
        if not self.spec.tumour:
            return np.zeros(shape, np.float32)
        inside = self.tissue_field > 0.5
        if not inside.any():
            return np.zeros(shape, np.float32)
        thr = _quantile_threshold(noise[inside], self.spec.tumour_fraction)
        return (0.5 + 0.8 * (noise - thr)).astype(np.float32)

    # -- nuclei ----------------------------------------------------------------------------------
    def _cell_value(self, mask: np.ndarray, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        iy = np.clip((y / self.field_step).astype(np.intp), 0, mask.shape[0] - 1)
        ix = np.clip((x / self.field_step).astype(np.intp), 0, mask.shape[1] - 1)
        return mask[iy, ix]

    def nuclei_in_block(self, by: int, bx: int) -> np.ndarray:
        """Nuclei of block (by, bx) as a structured array (level-0 pixel units)."""
        spec = self.spec
        b = NUCLEUS_BLOCK_PX
        rng = np.random.default_rng([spec.seed, 1, by, bx])
        area_um2 = (b * spec.mpp) ** 2
        tumour_pop = self.tumour_population
        max_density = tumour_pop["density"]
        n = rng.poisson(max_density * area_um2)
        y = by * b + rng.uniform(0, b, n)
        x = bx * b + rng.uniform(0, b, n)
        accept_u = rng.uniform(0, 1, n)
        u = rng.uniform(0, 1, (5, n))
        inside = (y < spec.height) & (x < spec.width)
        tissue = self._cell_value(self.tissue_mask, y, x) & inside
        tissue &= self._cell_value(self.lumen_field, y, x) < 0.5
        tumour = self._cell_value(self.tumour_mask, y, x) & tissue
        density = np.where(tumour, tumour_pop["density"], NORMAL_NUCLEI["density"])
        keep = tissue & (accept_u < density / max_density)

        def draw(key: str, k: int) -> np.ndarray:
            lo_n, hi_n = NORMAL_NUCLEI[key]
            lo_t, hi_t = tumour_pop[key]
            lo = np.where(tumour, lo_t, lo_n)
            hi = np.where(tumour, hi_t, hi_n)
            return lo + (hi - lo) * u[k]

        out = np.zeros(
            int(keep.sum()),
            dtype=[
                ("y", "f4"), ("x", "f4"), ("radius", "f4"), ("elong", "f4"), ("angle", "f4"),
                ("irreg", "f4"), ("lobes", "i4"), ("phase", "f4"), ("conc", "f4"),
                ("tumour", "?"),
            ],
        )  # fmt: skip
        out["y"], out["x"] = y[keep], x[keep]
        out["radius"] = (draw("radius", 0) / spec.mpp)[keep]
        out["elong"] = draw("elong", 1)[keep]
        out["irreg"] = draw("irreg", 2)[keep]
        out["conc"] = draw("conc", 3)[keep]
        out["angle"] = (u[4] * np.pi)[keep]
        out["lobes"] = (2 + (u[4] * 1000).astype(int) % 4)[keep]
        out["phase"] = ((u[0] * 7919.0) % (2 * np.pi))[keep]
        out["tumour"] = tumour[keep]
        return out

    @cached_property
    def tumour_population(self) -> dict:
        return tumour_nuclei(self.spec.atypia)

    def nuclei_in_rows(self, y0: float, y1: float) -> np.ndarray:
        """All nuclei whose extent may touch level-0 rows ``y0..y1``."""
        b = NUCLEUS_BLOCK_PX
        reach = TUMOUR_NUCLEI["radius"][1] / self.spec.mpp * 2.5
        first = max(0, int((y0 - reach) // b))
        last = min(int(np.ceil(self.spec.height / b)) - 1, int((y1 + reach) // b))
        n_bx = int(np.ceil(self.spec.width / b))
        parts = [self.nuclei_in_block(by, bx) for by in range(first, last + 1) for bx in range(n_bx)]
        return np.concatenate(parts) if parts else self.nuclei_in_block(0, 0)[:0]

    # -- rendering ---------------------------------------------------------------------------------
    def render_band(self, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
        """Haematoxylin and eosin concentrations for level-0 rows ``y0..y1`` (may exceed the slide).

        The nuclei are drawn on the whole band, the smooth fields are sampled a few rows at a time.
        """
        hema = np.zeros((y1 - y0, self.spec.width), np.float32)  # the nuclei first, then haematoxylin
        self._draw_nuclei(hema, self.nuclei_in_rows(y0, y1), y0)
        eosin = np.empty_like(hema)
        for a, b in row_chunks(y1 - y0, self.spec.width):
            self._stain_rows(hema[a:b], eosin[a:b], y0 + a, y0 + b)
        return hema, eosin

    def _stain_rows(self, hema: np.ndarray, eosin: np.ndarray, y0: int, y1: int) -> None:
        """Turn the nuclei in ``hema`` (rows ``y0..y1``) into H and E concentrations, in place."""
        w = self.spec.width
        step = self.field_step
        tissue = soft_threshold(sample_rows(self.tissue_field, step, y0, y1, w), 0.5, 6.0)
        lumen = sample_rows(self.lumen_field, step, y0, y1, w)
        tumour = soft_threshold(sample_rows(self.tumour_field, step, y0, y1, w), 0.5, 4.0) * tissue
        eosin_base = sample_rows(self.eosin_field, step, y0, y1, w)
        fibre = sample_rows(self.fibre_field, self.fibre_step, y0, y1, w)
        solid = tissue * (1.0 - lumen)
        atypia = self.spec.atypia
        stroma = solid * eosin_base * (0.55 + 0.9 * fibre) * (1.0 - 0.3 * atypia * tumour)
        nuclei = hema
        eosin[...] = stroma * (1.0 - 0.6 * np.clip(nuclei, 0.0, 1.0))
        np.maximum(solid * (0.04 + 0.08 * atypia * tumour), nuclei, out=hema)

    @staticmethod
    def _draw_nuclei(canvas: np.ndarray, nuclei: np.ndarray, y0: int) -> None:
        """Draw irregular ellipses with a soft edge and chromatin texture; overlapping nuclei take
        the darker value."""
        h, w = canvas.shape
        for n in nuclei:
            a = float(n["radius"]) * float(np.sqrt(n["elong"]))  # semi-major
            bmin = float(n["radius"]) / float(np.sqrt(n["elong"]))  # semi-minor
            reach = a * (1 + float(n["irreg"])) + 1.5
            cy, cx = float(n["y"]) - y0, float(n["x"])
            ya, yb = max(0, int(cy - reach)), min(h, int(cy + reach) + 2)
            xa, xb = max(0, int(cx - reach)), min(w, int(cx + reach) + 2)
            if ya >= yb or xa >= xb:
                continue
            yy = np.arange(ya, yb, dtype=np.float32)[:, None]  # broadcast: same values as a grid
            xx = np.arange(xa, xb, dtype=np.float32)[None, :]
            dy, dx = yy + 0.5 - cy, xx + 0.5 - cx
            ca, sa = np.cos(n["angle"]), np.sin(n["angle"])
            u = dx * ca + dy * sa
            v = -dx * sa + dy * ca
            theta = np.arctan2(v, u)
            scale = 1.0 + n["irreg"] * np.cos(n["lobes"] * theta + n["phase"])
            r = np.sqrt((u / a) ** 2 + (v / bmin) ** 2) / scale
            edge = np.clip((1.0 - r) * bmin + 0.5, 0.0, 1.0)
            chromatin = 0.85 + 0.15 * np.cos(3.1 * u + 2.3 * v + n["phase"])
            value = edge * chromatin * n["conc"]
            region = canvas[ya:yb, xa:xb]
            np.maximum(region, value, out=region)

    # -- ground truth ----------------------------------------------------------------------------
    @cached_property
    def tumour_fraction_of_tissue(self) -> float:
        tissue = int(self.tissue_mask.sum())
        return float(self.tumour_mask.sum()) / tissue if tissue else 0.0
