"""``WSI``: one whole-slide image opened lazily through a backend (tiffslide, OpenSlide, wsidicom).

Whatever the backend, a slide offers the same things: lazy level arrays that decode only the file
tiles a read touches (:attr:`WSI.arrays`, what napari displays), the same levels as dask arrays
chunked on the file's tiles (:attr:`WSI.levels`), metadata with the pixel size in µm,
:meth:`WSI.read_region` with OpenSlide's conventions and napari layer data. Opening reads headers
only. A file tile that cannot be decoded is shown as blank background, warned about once and listed
in :attr:`WSI.damaged_tiles`.
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
from .backends import FORMATS_HELP, candidates, is_dicom, open_source
from .checks import check_channels, check_dimensions, check_path, check_tiff_structure, tiff_kind
from .colour import SrgbTransform, check_colour_mode, profile_description
from .damage import DamagedTile, DamageLog
from .dicom_source import dicom_files_in
from .errors import MissingMPPWarning, NotASlideError, SlideError, SlideReadError
from .level_array import LevelArray, StridedLevel, TileReader
from .source import EncodedTile, TileSource

# Pixel sizes outside this range are not microscopy: 72/96/300 dpi defaults written by image
# editors give 84-353 µm/px and are treated as missing.
PLAUSIBLE_MPP_RANGE = (0.02, 50.0)
# A single-level image larger than this (pixels on its long side) gets strided virtual levels so a
# viewer never has to decode the whole image to show an overview.
VIRTUAL_PYRAMID_THRESHOLD = 4096
VIRTUAL_PYRAMID_SMALLEST = 2048
# The contrast limits of a non-RGB image come from at most this many of its smallest level's values.
DISPLAY_RANGE_SAMPLES = 4_000_000
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
    backend: str = "tiffslide"
    color: str = "as-scanned"  # "as-scanned" or "srgb"
    icc_profile: str | None = None  # description of the embedded profile, None when there is none
    notes: list[str] = field(default_factory=list)

    @property
    def has_mpp(self) -> bool:
        return self.mpp_x is not None and self.mpp_y is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _normalise_override(mpp: float | tuple[float, float] | None) -> tuple[float, float] | None:
    if mpp is None:
        return None
    try:
        x, y = (float(v) for v in mpp) if isinstance(mpp, (tuple, list)) else (float(mpp), float(mpp))
    except (TypeError, ValueError) as exc:
        raise InputError(f"MPP override must be a number in µm/px, got {mpp!r}") from exc
    lo, hi = PLAUSIBLE_MPP_RANGE
    if not (lo <= x <= hi and lo <= y <= hi):
        raise InputError(f"MPP override must be within {lo}..{hi} µm/px, got {mpp}")
    return x, y


def _valid_mpp(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) and value > 0 else None


def _open_first(path: Path, backend: str) -> tuple[TileSource, list[str]]:
    """The source from the first backend that opens ``path``, and notes on those that did not."""
    order = candidates(path, backend)
    failures: list[SlideError] = []
    for name in order:
        try:
            return open_source(path, name), [
                f"{n} could not open it ({f.reason})" for n, f in zip(order, failures)
            ]
        except SlideError as exc:
            failures.append(exc)
    first = failures[0]
    if len(failures) == 1 and backend != "auto":
        raise first
    others = ", ".join(n for n in order[1:])
    either = f", and {others} cannot open it either" if others else ""
    raise SlideReadError(path, f"{first.reason}{either}; {FORMATS_HELP}") from first


class WSI:
    """A whole-slide image opened lazily.

    Parameters
    ----------
    path : a slide file, or a DICOM WSI folder (or any one ``.dcm`` file of the series).
    mpp : optional override of the pixel size in µm/px (a number or ``(x, y)``), used when the file
        has none or a wrong one.
    backend : ``"auto"`` (by what the file is, with fallbacks), ``"tiffslide"``, ``"openslide"`` or
        ``"wsidicom"``.
    color : ``"as-scanned"`` (the file's pixels) or ``"srgb"`` (the embedded ICC profile applied).

    Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        mpp: float | tuple[float, float] | None = None,
        backend: str = "auto",
        color: str = "as-scanned",
    ) -> None:
        self.path = Path(path)
        override = _normalise_override(mpp)
        check_colour_mode(color)
        check_path(self.path)
        if self.path.is_dir() and not is_dicom(self.path):
            raise SlideReadError(
                self.path, f"is a folder, not a slide file or a DICOM WSI folder; {FORMATS_HELP}"
            )
        if tiff_kind(self.path) is not None:
            check_tiff_structure(self.path)
        self._source, fallback_notes = _open_first(self.path, backend)
        try:
            self._setup(override, color, fallback_notes)
        except BaseException:
            self._source.close()
            raise
        if self.metadata.mpp_source in ("missing", "implausible"):
            self._warn_missing_mpp()

    # -- construction ------------------------------------------------------------------------------
    def _setup(self, override: tuple[float, float] | None, color: str, fallback_notes: list[str]) -> None:
        source = self._source
        if not source.levels:
            raise SlideReadError(self.path, "contains no image")
        h0, w0 = source.levels[0].shape[:2]
        check_dimensions(self.path, w0, h0)
        for i, spec in enumerate(source.levels):
            if min(spec.tile) < 1:
                th, tw = spec.tile
                raise SlideReadError(
                    self.path, f"has a damaged header: level {i} states tiles of {tw} x {th} px"
                )
        self._notes: list[str] = list(fallback_notes)
        self._notes += list(source.info.notes)
        first = source.levels[0]
        channels = int(first.shape[2]) if len(first.shape) == 3 else 1
        check_channels(self.path, channels)
        is_rgb = first.dtype == np.uint8 and channels in (3, 4)
        transform = None
        icc = source.info.icc_profile
        if color == "srgb":
            if icc is None:
                self._notes.append("no embedded colour profile: sRGB shown as scanned")
            elif not is_rgb:
                self._notes.append("colour profile ignored: not an RGB image")
            else:
                try:
                    transform = SrgbTransform(icc)
                except ValueError as exc:
                    raise SlideReadError(self.path, str(exc)) from exc
        self.damage = DamageLog(self.path)
        self._reader = TileReader(source, self.damage, 255 if is_rgb else 0, transform)
        self._arrays: list[LevelArray | StridedLevel] = [
            LevelArray(self._reader, i) for i in range(len(source.levels))
        ]
        self._virtual = self._add_virtual_levels(source)
        self._levels = [self._as_dask(i, a) for i, a in enumerate(self._arrays)]
        self.metadata = self._build_metadata(override, color, channels, bool(is_rgb), icc)

    def _add_virtual_levels(self, source: TileSource) -> int:
        first = source.levels[0]
        if (
            first.tile[0] >= first.shape[0]
            and first.tile[1] >= first.shape[1]
            and max(first.shape[:2]) > VIRTUAL_PYRAMID_THRESHOLD
        ):
            self._notes.append(
                "stored as a single strip: every read decodes the whole image; "
                "convert it to a tiled pyramidal TIFF for speed"
            )
        if len(self._arrays) != 1 or max(first.shape[:2]) <= VIRTUAL_PYRAMID_THRESHOLD:
            return 0
        base = self._arrays[0]
        assert isinstance(base, LevelArray)
        factor, count = 2, 0
        while max(first.shape[:2]) / (factor // 2) > VIRTUAL_PYRAMID_SMALLEST:
            self._arrays.append(StridedLevel(base, factor))
            count += 1
            factor *= 2
        self._notes.append(f"no stored pyramid: {count} strided overview level(s) computed on demand")
        return count

    def _as_dask(self, index: int, array: LevelArray | StridedLevel) -> da.Array:
        key = f"{self.path.resolve()}|{self._stamp()}|{index}|{self._source.backend}|{id(self)}"
        return da.from_array(
            array,
            chunks=array.chunks,
            name="wsi-" + hashlib.sha1(key.encode()).hexdigest()[:20],
            asarray=True,
            lock=False,
            fancy=False,
            meta=np.empty((0,) * array.ndim, array.dtype),
        )

    def _stamp(self) -> str:
        stat = self.path.stat()
        return f"{stat.st_size}|{stat.st_mtime_ns}"

    def _build_metadata(
        self, override: tuple[float, float] | None, color: str, channels: int, is_rgb: bool, icc: bytes | None
    ) -> SlideMetadata:
        info = self._source.info
        raw_x, raw_y = info.mpp
        mpp_x, mpp_y = _valid_mpp(raw_x), _valid_mpp(raw_y)
        stated = [v for v in (raw_x, raw_y) if v is not None and _valid_mpp(v) is None]
        if stated:
            self._notes.append(f"file states an invalid pixel size ({stated[0]!r} µm/px); ignored")
        if mpp_x is None and mpp_y is not None:
            mpp_x = mpp_y
        if mpp_y is None and mpp_x is not None:
            mpp_y = mpp_x
        lo, hi = PLAUSIBLE_MPP_RANGE
        if override is not None:
            mpp_x, mpp_y = override
            source = "override"
        elif mpp_x is None or mpp_y is None:
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
        first = self._source.levels[0]
        w0, h0 = first.shape[1], first.shape[0]
        dims = [(int(s.shape[1]), int(s.shape[0])) for s in self._source.levels]
        return SlideMetadata(
            path=str(self.path.resolve()),
            name=self.path.stem if self.path.is_file() else self.path.name,
            vendor=info.vendor,
            objective_power=info.objective_power,
            mpp_x=mpp_x,
            mpp_y=mpp_y,
            mpp_source=source,
            level_dimensions=dims,
            level_downsamples=[float((w0 / w + h0 / h) / 2) for w, h in dims],
            tile_size=first.tile if info.storage == "tiled" else None,
            storage=info.storage,
            dtype=str(first.dtype),
            channels=channels,
            is_rgb=is_rgb,
            virtual_levels=self._virtual,
            associated_images=list(info.associated),
            backend=self._source.backend,
            color=color,
            icc_profile=profile_description(icc) if icc else None,
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
                "unit, so physical measurements and µm-based tiling are off. Set it in the Slide "
                "info dock, the mpp column of a cohort CSV or the Train table, --mpp on the command "
                "line or mpp=... in Python."
            ),
            stacklevel=3,
        )

    # -- access ----------------------------------------------------------------------------------
    @property
    def backend(self) -> str:
        """The backend that opened the file: ``tiffslide``, ``openslide`` or ``wsidicom``."""
        return self._source.backend

    @property
    def arrays(self) -> list[LevelArray | StridedLevel]:
        """Lazy level arrays, largest first, sliced like NumPy arrays (what napari displays)."""
        return list(self._arrays)

    @property
    def levels(self) -> list[da.Array]:
        """The same levels as dask arrays chunked on the file's tiles: (H, W, 3) uint8 for RGB."""
        return list(self._levels)

    @property
    def level_count(self) -> int:
        """Number of levels including strided virtual ones."""
        return len(self._arrays)

    @property
    def dimensions(self) -> tuple[int, int]:
        """(width, height) of level 0 in pixels."""
        h, w = self._arrays[0].shape[:2]
        return int(w), int(h)

    @property
    def mpp(self) -> tuple[float, float] | None:
        """(mpp_x, mpp_y) in µm/px, or None when unknown."""
        m = self.metadata
        return (m.mpp_x, m.mpp_y) if m.has_mpp else None

    @property
    def damaged_tiles(self) -> list[DamagedTile]:
        """File tiles found unreadable so far (they read as blank background)."""
        return self.damage.tiles

    def level_downsample(self, level: int) -> tuple[float, float]:
        """(x, y) downsample of ``level`` relative to level 0."""
        h0, w0 = self._arrays[0].shape[:2]
        h, w = self._arrays[level].shape[:2]
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
        self, level: int, x0: int, y0: int, x1: int, y1: int, fill: int = 255, strict: bool = False
    ) -> np.ndarray:
        """Pixels ``[y0, y1) x [x0, x1)`` of ``level`` in that level's pixel coordinates; the part
        outside the slide is filled with ``fill``. Damaged file tiles read as blank background, or
        with ``strict`` raise :class:`~napari_wsirobust.io.UnreadableRegionError`."""
        return self._arrays[level].window(y0, y1, x0, x1, fill, strict)

    def encoded_codec(self, level: int) -> str | None:
        """The codec (``"jpeg"``) in which :meth:`encoded_tile` gives ``level``'s file tiles, or None
        when it does not (another backend or codec, a strided virtual level, a colour transform)."""
        return self._reader.encoded_codec(level)

    def encoded_tile(self, level: int, row: int, col: int) -> EncodedTile | None:
        """File tile (row, col) of ``level`` (a grid of ``arrays[level].tile``) as a standalone
        encoded stream, to decode elsewhere (e.g. on a GPU). None when it is not offered or cannot be
        read: read that tile through :meth:`read_level_window`, which blanks and reports a damaged
        one as usual."""
        return self._reader.encoded(level, row, col)

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro, thumbnail) as an RGB array."""
        return self._source.associated_image(name)

    def content_id(self) -> str:
        """A cheap identity of the file's content (size, level shapes, first and last MiB; every
        file of a DICOM folder): fast even for multi-GB slides, changes when a file is rewritten."""
        extra = repr(self.metadata.level_dimensions)
        if self.path.is_dir():
            parts = [file_fingerprint(p) for p in dicom_files_in(self.path)]
            return hashlib.sha256("|".join([extra, *parts]).encode()).hexdigest()[:24]
        return file_fingerprint(self.path, extra=extra)[:24]

    def clear_cache(self) -> None:
        """Forget decoded tiles (the next reads decode from the file again)."""
        self._reader.clear_cache()

    # -- napari ------------------------------------------------------------------------------------
    def to_layer_data(self, name: str | None = None) -> list[tuple[Any, dict[str, Any], str]]:
        """napari layer data tuples (no napari import needed): one image layer, multiscale when the
        slide has more than one level, scaled to micrometres when the MPP is known."""
        m = self.metadata
        arrays = self.arrays
        kwargs: dict[str, Any] = {
            "name": name or m.name,
            "rgb": m.is_rgb,
            "multiscale": len(arrays) > 1,
            "scale": (m.mpp_y, m.mpp_x) if m.has_mpp else (1.0, 1.0),
            "units": ("µm", "µm") if m.has_mpp else ("pixel", "pixel"),
            "metadata": {LAYER_METADATA_KEY: m.to_dict()},
        }
        if m.is_rgb:
            kwargs["contrast_limits"] = (0, 255)
        else:
            kwargs["contrast_limits"] = self._display_range()
            kwargs["colormap"] = "gray"
        data: Any = arrays if len(arrays) > 1 else arrays[0]
        return [(data, kwargs, "image")]

    def _display_range(self) -> tuple[float, float]:
        """Contrast limits of a non-RGB image from the 0.5-99.5 percentiles of its smallest level
        (every ``step``-th pixel of a large one, so a header stating hundreds of channels cannot make
        this take gigabytes)."""
        level = self._arrays[-1]
        step = max(1, int(np.ceil(np.sqrt(level.size / DISPLAY_RANGE_SAMPLES))))
        small = np.asarray(level[::step, ::step], dtype=np.float64)
        lo, hi = np.percentile(small, [0.5, 99.5]) if small.size else (0.0, 1.0)
        return (float(lo), float(hi if hi > lo else lo + 1))

    # -- lifetime ----------------------------------------------------------------------------------
    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> WSI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        mpp = f"{self.metadata.mpp_x:.4g} µm/px" if self.metadata.has_mpp else "no MPP"
        return f"WSI({self.path.name!r}, {w}x{h}, {self.level_count} levels, {mpp}, {self.backend})"


def open_slide(
    path: str | os.PathLike[str],
    mpp: float | tuple[float, float] | None = None,
    backend: str = "auto",
    color: str = "as-scanned",
) -> WSI:
    """Open a slide lazily; see :class:`WSI`."""
    return WSI(path, mpp=mpp, backend=backend, color=color)
