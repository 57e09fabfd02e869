"""``WSI``: one whole-slide image opened lazily through tiffslide.

Each pyramid level is a dask array over tiffslide's zarr store, chunked on the file's own tiles (or on
groups of whole strips for strip TIFFs), so opening a slide reads only its header and every read
decodes just the tiles it touches.
"""

from __future__ import annotations

import hashlib
import os
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from .._fingerprint import file_fingerprint
from ..errors import InputError
from .errors import MissingMPPWarning, NotASlideError, SlideNotFoundError, SlideReadError

SUPPORTED_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".qptiff")
FORMATS_HELP = (
    "supported: Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, Philips TIFF and generic "
    "tiled pyramidal TIFF"
)
# Pixel sizes outside this range are not microscopy: 72/96/300 dpi defaults written by image
# editors give 84-353 µm/px and are treated as missing.
PLAUSIBLE_MPP_RANGE = (0.02, 50.0)
# A single-level image larger than this (pixels on its long side) gets strided virtual levels so a
# viewer never has to decode the whole image to show an overview.
VIRTUAL_PYRAMID_THRESHOLD = 4096
VIRTUAL_PYRAMID_SMALLEST = 2048
STRIP_CHUNK_BYTES = 16 * 2**20
LAYER_METADATA_KEY = "wsirobust"

_warned_missing_mpp: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class SlideMetadata:
    """What is known about a slide, JSON-serialisable (kept in napari layer metadata)."""

    path: str
    name: str
    vendor: str | None
    objective_power: float | None
    mpp_x: float | None
    mpp_y: float | None
    mpp_source: str  # "file", "override", "missing" or "implausible"
    level_dimensions: list[tuple[int, int]]  # (width, height) per stored level
    level_downsamples: list[float]
    tile_size: tuple[int, int] | None  # (height, width) of a native tile; None for strips
    storage: str  # "tiled" or "strips"
    dtype: str
    channels: int
    is_rgb: bool
    virtual_levels: int
    associated_images: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def has_mpp(self) -> bool:
        return self.mpp_x is not None and self.mpp_y is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _as_float(value: Any) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if np.isfinite(f) and f > 0 else None


def _normalise_override(mpp: float | tuple[float, float] | None) -> tuple[float, float] | None:
    if mpp is None:
        return None
    if isinstance(mpp, (tuple, list)):
        x, y = (float(v) for v in mpp)
    else:
        x = y = float(mpp)
    lo, hi = PLAUSIBLE_MPP_RANGE
    if not (lo <= x <= hi and lo <= y <= hi):
        raise InputError(f"MPP override must be within {lo}..{hi} µm/px, got {mpp}")
    return x, y


class WSI:
    """A whole-slide image opened lazily.

    Parameters
    ----------
    path : the slide file.
    mpp : optional override of the pixel size in µm/px (a number or ``(x, y)``), used when the file
        has none or a wrong one.

    Use as a context manager or call :meth:`close`; dask arrays taken from :attr:`levels` stay
    valid while the slide is open.
    """

    def __init__(self, path: str | os.PathLike[str], mpp: float | tuple[float, float] | None = None) -> None:
        import tifffile
        import tiffslide

        self.path = Path(path)
        override = _normalise_override(mpp)
        if not self.path.exists():
            raise SlideNotFoundError(self.path, f"no such file ({self.path})")
        if self.path.is_dir():
            raise SlideReadError(self.path, f"is a folder, not a slide file; {FORMATS_HELP}")
        try:
            self._slide = tiffslide.TiffSlide(self.path)
        except tifffile.TiffFileError as exc:
            raise SlideReadError(
                self.path, f"not a readable TIFF-based slide ({exc}); {FORMATS_HELP}"
            ) from exc
        except Exception as exc:  # any decoder failure is reported, never a crash
            raise SlideReadError(self.path, f"could not be opened ({exc}); {FORMATS_HELP}") from exc
        try:
            self._group = self._slide.zarr_group
            self._native = [self._slide.zarr_group[str(i)] for i in range(self._slide.level_count)]
        except Exception as exc:
            self._slide.close()
            raise SlideReadError(self.path, f"pixel data cannot be accessed ({exc})") from exc
        self._notes: list[str] = []
        self._levels = self._build_levels()
        self.metadata = self._build_metadata(override)
        if self.metadata.mpp_source in ("missing", "implausible"):
            self._warn_missing_mpp()

    # -- construction ------------------------------------------------------------------------------
    def _dask_name(self, level: int) -> str:
        stat = self.path.stat()
        key = f"{self.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{level}"
        return "wsi-" + hashlib.sha1(key.encode()).hexdigest()[:20]

    def _chunks_for(self, arr: Any) -> tuple[int, ...]:
        chunks = tuple(int(c) for c in arr.chunks)
        height, width = arr.shape[0], arr.shape[1]
        if chunks[1] < width:  # tiled storage: use the native tiles
            return chunks
        row_bytes = width * int(np.prod(arr.shape[2:], dtype=np.int64)) * arr.dtype.itemsize
        strips = max(1, STRIP_CHUNK_BYTES // max(1, row_bytes * chunks[0]))
        return (min(height, chunks[0] * strips), *arr.shape[1:])

    def _build_levels(self) -> list[da.Array]:
        levels = []
        for i, arr in enumerate(self._native):
            if arr.ndim not in (2, 3):
                raise NotASlideError(
                    self.path, f"has {arr.ndim}-D pixel data {arr.shape}; expected a 2-D image"
                )
            lvl = da.from_array(
                arr,
                chunks=self._chunks_for(arr),
                name=self._dask_name(i),
                asarray=True,
                lock=False,
                fancy=False,
            )
            if lvl.ndim == 3 and lvl.shape[2] == 4:
                lvl = lvl[..., :3]  # RGBA: alpha carries nothing for brightfield
            levels.append(lvl)
        first = self._native[0]
        single_chunk = int(first.chunks[1]) >= first.shape[1] and int(first.chunks[0]) >= first.shape[0]
        if single_chunk and max(first.shape[:2]) > VIRTUAL_PYRAMID_THRESHOLD:
            self._notes.append(
                "stored as a single strip: every read decodes the whole image; "
                "convert it to a tiled pyramidal TIFF for speed"
            )
        self._virtual = 0
        if len(levels) == 1 and max(levels[0].shape[:2]) > VIRTUAL_PYRAMID_THRESHOLD:
            factor = 2
            while max(levels[0].shape[:2]) / (factor // 2) > VIRTUAL_PYRAMID_SMALLEST:
                levels.append(levels[0][::factor, ::factor])
                self._virtual += 1
                factor *= 2
            self._notes.append(
                f"no stored pyramid: {self._virtual} strided overview level(s) computed on demand"
            )
        return levels

    def _build_metadata(self, override: tuple[float, float] | None) -> SlideMetadata:
        props = self._slide.properties
        first = self._native[0]
        channels = int(first.shape[2]) if first.ndim == 3 else 1
        is_rgb = first.dtype == np.uint8 and channels in (3, 4)
        mpp_x, mpp_y = (
            _as_float(props.get("tiffslide.mpp-x")),
            _as_float(props.get("tiffslide.mpp-y")),
        )
        if mpp_x is None and mpp_y is not None:
            mpp_x = mpp_y
        if mpp_y is None and mpp_x is not None:
            mpp_y = mpp_x
        lo, hi = PLAUSIBLE_MPP_RANGE
        if override is not None:
            mpp_x, mpp_y = override
            source = "override"
        elif mpp_x is None:
            source = "missing"
        elif not (lo <= mpp_x <= hi and lo <= mpp_y <= hi):
            self._notes.append(
                f"file states {mpp_x:.4g} µm/px, which is not a microscope pixel size "
                "(probably a screen DPI default); ignored"
            )
            mpp_x = mpp_y = None
            source = "implausible"
        else:
            source = "file"
        tiled = int(first.chunks[1]) < first.shape[1]
        objective = _as_float(props.get("tiffslide.objective-power"))
        try:
            associated = sorted(k for k in self._slide.associated_images if k)
        except Exception:  # a broken associated image must not stop the slide from opening
            associated = []
        return SlideMetadata(
            path=str(self.path.resolve()),
            name=self.path.stem,
            vendor=props.get("tiffslide.vendor"),
            objective_power=objective,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source=source,
            level_dimensions=[(int(w), int(h)) for w, h in self._slide.level_dimensions],
            level_downsamples=[float(d) for d in self._slide.level_downsamples],
            tile_size=(int(first.chunks[0]), int(first.chunks[1])) if tiled else None,
            storage="tiled" if tiled else "strips",
            dtype=str(first.dtype),
            channels=channels,
            is_rgb=bool(is_rgb),
            virtual_levels=self._virtual,
            associated_images=associated,
            notes=list(self._notes),
        )

    def _warn_missing_mpp(self) -> None:
        key = str(self.path.resolve())
        with _warned_lock:
            if key in _warned_missing_mpp:
                return
            _warned_missing_mpp.add(key)
        warnings.warn(
            MissingMPPWarning(
                f"{self.path.name}: no usable pixel size (MPP) in the file; shown at 1 pixel = 1 "
                "unit, so physical measurements and µm-based tiling are off. Set the MPP in the "
                "Slide info widget or pass mpp=... / --mpp."
            ),
            stacklevel=3,
        )

    # -- access ----------------------------------------------------------------------------------
    @property
    def levels(self) -> list[da.Array]:
        """Lazy pyramid levels, largest first: (H, W, 3) uint8 for RGB slides."""
        return list(self._levels)

    @property
    def level_count(self) -> int:
        """Number of levels including strided virtual ones."""
        return len(self._levels)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0 in pixels."""
        h, w = self._levels[0].shape[:2]
        return int(w), int(h)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """(mpp_x, mpp_y) in µm/px, or None when unknown."""
        m = self.metadata
        return (m.mpp_x, m.mpp_y) if m.has_mpp else None

    def level_downsample(self, level: int) -> tuple[float, float]:
        """(x, y) downsample of ``level`` relative to level 0."""
        h0, w0 = self._levels[0].shape[:2]
        h, w = self._levels[level].shape[:2]
        return w0 / w, h0 / h

    def best_level_for_downsample(self, downsample: float) -> int:
        """The smallest level whose downsample does not exceed ``downsample`` (so reading from it
        and resizing down never upsamples)."""
        best = 0
        for i in range(self.level_count):
            factor = max(self.level_downsample(i))
            if factor <= downsample * (1 + 1e-6) and factor >= max(self.level_downsample(best)):
                best = i
        return best

    def require_rgb(self) -> None:
        """Raise :class:`NotASlideError` unless this is an RGB brightfield slide."""
        m = self.metadata
        if not m.is_rgb:
            raise NotASlideError(
                self.path,
                f"is a {m.channels}-channel {m.dtype} image, not an RGB brightfield slide; it can "
                "be viewed but not analysed",
            )

    def read_region(
        self, location: tuple[int, int], level: int, size: tuple[int, int], fill: int = 255
    ) -> np.ndarray:
        """Pixels of ``level`` for a region whose top-left is ``location`` (x, y) in level-0
        pixels and whose ``size`` is (width, height) in level pixels, as in OpenSlide.
        Parts outside the slide are filled with ``fill`` (white glass)."""
        if not 0 <= level < self.level_count:
            raise IndexError(f"level {level} out of range 0..{self.level_count - 1}")
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise InputError(f"region size must be positive, got {size}")
        # OpenSlide's convention: one downsample per level (mean of x and y), floored.
        ds = sum(self.level_downsample(level)) / 2.0
        x0, y0 = int(location[0] / ds), int(location[1] / ds)
        return self.read_level_window(level, x0, y0, x0 + w, y0 + h, fill)

    def read_level_window(
        self, level: int, x0: int, y0: int, x1: int, y1: int, fill: int = 255, scheduler: str = "threads"
    ) -> np.ndarray:
        """Pixels ``[y0, y1) x [x0, x1)`` of ``level`` in that level's pixel coordinates; the part
        outside the slide is filled with ``fill``. ``scheduler="sync"`` suits callers that already
        run in worker threads."""
        arr = self._levels[level]
        H, W = arr.shape[:2]
        out = np.full((y1 - y0, x1 - x0, *arr.shape[2:]), fill, dtype=arr.dtype)
        ya, yb = max(0, y0), min(H, y1)
        xa, xb = max(0, x0), min(W, x1)
        if ya < yb and xa < xb:
            out[ya - y0 : yb - y0, xa - x0 : xb - x0] = arr[ya:yb, xa:xb].compute(scheduler=scheduler)
        return out

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro, thumbnail) as an RGB array."""
        images = self._slide.associated_images
        if name not in images:
            raise KeyError(f"{self.path.name} has no associated image {name!r}")
        return np.asarray(images[name].convert("RGB"))

    def content_id(self) -> str:
        """A cheap identity of the file's content (size, level shapes, first and last MiB): fast
        even for multi-GB slides, changes when the file is rewritten."""
        return file_fingerprint(self.path, extra=repr(self.metadata.level_dimensions))[:24]

    # -- napari ------------------------------------------------------------------------------------
    def to_layer_data(self, name: str | None = None) -> list[tuple[Any, dict[str, Any], str]]:
        """napari layer data tuples (no napari import needed): one image layer, multiscale when the
        slide has more than one level, scaled to micrometres when the MPP is known."""
        m = self.metadata
        levels = self.levels
        kwargs: dict[str, Any] = {
            "name": name or m.name,
            "rgb": m.is_rgb,
            "multiscale": len(levels) > 1,
            "scale": (m.mpp_y, m.mpp_x) if m.has_mpp else (1.0, 1.0),
            "units": ("µm", "µm") if m.has_mpp else ("pixel", "pixel"),
            "metadata": {LAYER_METADATA_KEY: m.to_dict()},
        }
        if m.is_rgb:
            kwargs["contrast_limits"] = (0, 255)
        else:
            kwargs["contrast_limits"] = self._display_range()
            kwargs["colormap"] = "gray"
        data: Any = levels if len(levels) > 1 else levels[0]
        return [(data, kwargs, "image")]

    def _display_range(self) -> tuple[float, float]:
        """Contrast limits of a non-RGB image from the 0.5-99.5 percentiles of its smallest level."""
        small = np.asarray(self._levels[-1].compute(scheduler="threads"), dtype=np.float64)
        lo, hi = np.percentile(small, [0.5, 99.5]) if small.size else (0.0, 1.0)
        return (float(lo), float(hi if hi > lo else lo + 1))

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._slide.close()

    def __enter__(self) -> WSI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        mpp = f"{self.metadata.mpp_x:.4g} µm/px" if self.metadata.has_mpp else "no MPP"
        return f"WSI({self.path.name!r}, {w}x{h}, {self.level_count} levels, {mpp})"


def open_slide(path: str | os.PathLike[str], mpp: float | tuple[float, float] | None = None) -> WSI:
    """Open a slide lazily; see :class:`WSI`."""
    return WSI(path, mpp=mpp)
