"""TIFF-family slides (Aperio SVS, generic pyramidal TIFF, Philips, Ventana, Leica, NDPI...).

tiffslide reads the format's metadata and level layout; pixels are decoded straight from the file
with tifffile's per-segment decoder (one ``pread`` and one decode per file tile, no zarr or dask in
between), which is what makes region reads as fast as the fastest reader. Levels tifffile cannot
address tile by tile (NDPI, composited series, planar data) go through tiffslide's zarr store.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SlideReadError
from .source import LevelSpec, SourceInfo, TileSource, exception_summary, pil_associated_image

STRIP_CHUNK_BYTES = 16 * 2**20


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class _SegmentLevel:
    """A level stored as one TIFF page: file tiles (or groups of strips) decoded directly."""

    def __init__(self, page: Any, fd: int, file_size: int) -> None:
        self._page = page
        self._fd = fd
        self._file_size = file_size
        self._decode = page.decode  # tifffile builds it once per page
        self._offsets = page.dataoffsets
        self._counts = page.databytecounts
        self._shape = tuple(int(s) for s in page.shape)
        height, width = self._shape[:2]
        if page.is_tiled:
            th, tw = int(page.tilelength), int(page.tilewidth)
            self._strips_per_chunk = 0
            self._tiles_across = -(-width // tw)
            self.tile = (th, tw)
            self.tiled = True
        else:
            rows = max(1, min(int(page.rowsperstrip or height), height))
            row_bytes = width * int(np.prod(self._shape[2:], dtype=np.int64)) * page.dtype.itemsize
            self._strips_per_chunk = max(1, STRIP_CHUNK_BYTES // max(1, row_bytes * rows))
            self._rows_per_strip = rows
            self.tile = (min(height, rows * self._strips_per_chunk), width)
            self.tiled = False

    def problem(self, row: int, col: int) -> str | None:
        for index in self._segments(row, col):
            if index >= len(self._offsets) or index >= len(self._counts):
                return "the file's tile table has no entry for it"
            offset, count = int(self._offsets[index]), int(self._counts[index])
            if count == 0:
                return "the file stores no data for it (byte count 0)"
            if offset + count > self._file_size:
                return (
                    f"its data would end at byte {offset + count:,} but the file ends at "
                    f"{self._file_size:,} bytes - an incomplete copy?"
                )
        return None

    def _segments(self, row: int, col: int) -> range:
        if self._strips_per_chunk:
            first = row * self._strips_per_chunk
            n_strips = -(-self._shape[0] // self._rows_per_strip)
            return range(first, min(first + self._strips_per_chunk, n_strips))
        return range(row * self._tiles_across + col, row * self._tiles_across + col + 1)

    def read(self, row: int, col: int) -> np.ndarray:
        parts = []
        for index in self._segments(row, col):
            data = os.pread(self._fd, int(self._counts[index]), int(self._offsets[index]))
            segment, _, shape = self._decode(data, index, jpegtables=self._page.jpegtables)
            if segment is None:
                raise ValueError("the decoder returned no pixels")
            parts.append(np.asarray(segment).reshape(shape[1:]))
        out = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        th, tw = self.tile
        y0, x0 = row * th, col * tw
        h, w = min(th, self._shape[0] - y0), min(tw, self._shape[1] - x0)
        out = out[:h, :w]
        return out if len(self._shape) == 3 else out[..., 0]


class _ZarrLevel:
    """A level read through tiffslide's zarr store, chunk by chunk."""

    def __init__(self, array: Any) -> None:
        self._array = array
        self._shape = tuple(int(s) for s in array.shape)
        self.tile = (int(array.chunks[0]), int(array.chunks[1]))
        self.tiled = self.tile[1] < self._shape[1]

    def problem(self, row: int, col: int) -> str | None:
        return None

    def read(self, row: int, col: int) -> np.ndarray:
        th, tw = self.tile
        y0, x0 = row * th, col * tw
        return np.asarray(self._array[y0 : y0 + th, x0 : x0 + tw])


def _segment_addressable(page: Any, level_shape: tuple[int, ...]) -> bool:
    import tifffile

    if getattr(page, "is_ndpi", False) or tuple(page.shape) != level_shape:
        return False
    if page.planarconfig != tifffile.PLANARCONFIG.CONTIG and page.samplesperpixel > 1:
        return False
    if page.is_tiled and page.imagedepth > 1:
        return False
    return page.compression in tifffile.TIFF.DECOMPRESSORS or page.compression == 1


class TiffSource(TileSource):
    """A TIFF-based slide opened with tiffslide + tifffile."""

    backend = "tiffslide"

    def __init__(self, path: Path) -> None:
        import tiffslide

        super().__init__(path)
        try:
            self._slide = tiffslide.TiffSlide(path)
        except Exception as exc:  # tifffile/tiffslide raise many types on foreign or damaged files
            raise SlideReadError(path, f"not a readable TIFF-based slide ({exception_summary(exc)})") from exc
        self._fd = os.open(path, os.O_RDONLY)
        try:
            self._levels = self._open_levels()
            self.info = self._read_info()
        except SlideReadError:
            self.close()
            raise
        except Exception as exc:
            self.close()
            raise SlideReadError(
                path, f"its pixel data cannot be located ({exception_summary(exc)})"
            ) from exc

    def _open_levels(self) -> list[_SegmentLevel | _ZarrLevel]:
        import tifffile

        props = self._slide.properties
        tf = self._slide.ts_tifffile
        group = self._slide.zarr_group
        count = self._slide.level_count
        if count == 0:
            raise SlideReadError(self.path, "contains no image")
        composed = bool(props.get("tiffslide.series-composition"))
        series = None if composed else tf.series[int(props.get("tiffslide.series-index", 0) or 0)]
        size = os.fstat(self._fd).st_size
        levels: list[_SegmentLevel | _ZarrLevel] = []
        for i in range(count):
            arr = group[str(i)]
            shape = tuple(int(s) for s in arr.shape)
            if len(shape) not in (2, 3):
                from .errors import NotASlideError

                raise NotASlideError(
                    self.path, f"has {len(shape)}-D pixel data {shape}; expected a 2-D image"
                )
            page = None
            if series is not None and i < len(series.levels) and len(series.levels[i].pages) == 1:
                page = series.levels[i].pages[0]
                if not isinstance(page, tifffile.TiffPage):
                    page = None
            if page is not None and _segment_addressable(page, shape):
                level: _SegmentLevel | _ZarrLevel = _SegmentLevel(page, self._fd, size)
            else:
                level = _ZarrLevel(arr)
            levels.append(level)
            self.levels.append(LevelSpec(shape, np.dtype(arr.dtype), level.tile))
        return levels

    def _read_info(self) -> SourceInfo:
        props = self._slide.properties
        try:
            associated = sorted(k for k in self._slide.associated_images if k)
        except Exception:  # a broken associated image must not stop the slide from opening
            associated = []
        first = self._levels[0]
        return SourceInfo(
            vendor=props.get("tiffslide.vendor"),
            mpp=(_as_float(props.get("tiffslide.mpp-x")), _as_float(props.get("tiffslide.mpp-y"))),
            objective_power=_as_float(props.get("tiffslide.objective-power")),
            icc_profile=self._slide._profile if isinstance(self._slide._profile, bytes) else None,
            associated=associated,
            storage="tiled" if first.tiled else "strips",
        )

    def tile_problem(self, level: int, row: int, col: int) -> str | None:
        return self._levels[level].problem(row, col)

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        return self._levels[level].read(row, col)

    def associated_image(self, name: str) -> np.ndarray:
        return pil_associated_image(self._slide.associated_images, self.path, name)

    def close(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)
        self._slide.close()
