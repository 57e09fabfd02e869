"""TIFF-family slides (Aperio SVS, generic pyramidal TIFF, Philips, Ventana, Leica, NDPI...).

tiffslide reads the format's metadata and level layout; pixels are decoded straight from the file
with tifffile's per-segment decoder (one ``pread`` and one decode per file tile, no zarr or dask in
between), which is what makes region reads as fast as the fastest reader. Levels tifffile cannot
address tile by tile (NDPI, composited series, planar data) go through tiffslide's zarr store.

Tiled JPEG levels also give each file tile's bytes as a standalone JPEG (:meth:`TiffSource.encoded_tile`,
for decoding on a GPU): the page's JPEGTables are spliced in after the tile's SOI, and RGB-in-JPEG
(Aperio SVS, which says so only in the TIFF photometric tag) gets an Adobe APP14 marker with
transform 0, without which decoders assume YCbCr. Whether a level qualifies is decided from its tags
when the slide opens and confirmed on first use by decoding one tile both ways.
"""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SlideReadError
from .source import EncodedTile, LevelSpec, SourceInfo, TileSource, exception_summary, pil_associated_image

STRIP_CHUNK_BYTES = 16 * 2**20
JPEG = "jpeg"
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"
# APP14 "Adobe", version 100, no flags, transform 0: the three components are RGB, not YCbCr.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
_BASELINE_FRAMES = (0xC0, 0xC1)  # sequential, Huffman-coded: what batched GPU decoders take
_JPEG_CHECK_TILES = 8


def _jpeg_frame(stream: bytes) -> tuple[int, int, int] | None:
    """(SOF marker, sample precision, components) of a JPEG stream, None when no frame header comes
    before the first scan."""
    i = 2
    while i + 4 <= len(stream) and stream[i] == 0xFF:
        marker = stream[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return (marker, stream[i + 4], stream[i + 9]) if i + 10 <= len(stream) else None
        if marker == 0xDA:
            return None
        i += 2 + int.from_bytes(stream[i + 2 : i + 4], "big")
    return None


def _jpeg_prefix(page: Any) -> bytes | None:
    """What goes between SOI and the rest of each tile of ``page`` to make it a standalone JPEG
    (Adobe RGB marker, JPEG tables), or None when the page's tiles cannot be given as baseline RGB
    or YCbCr JPEG streams."""
    import tifffile

    photometric = tifffile.PHOTOMETRIC
    if page.compression != 7 or not page.is_tiled or page.samplesperpixel != 3:
        return None
    if page.bitspersample != 8 or page.photometric not in (photometric.RGB, photometric.YCBCR):
        return None
    tables = bytes(page.jpegtables or b"")
    if tables and not (tables.startswith(_SOI) and tables.endswith(_EOI)):
        return None
    return (_ADOBE_RGB if page.photometric == photometric.RGB else b"") + tables[2:-2]


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
        self._jpeg_prefix = _jpeg_prefix(page)
        self._jpeg_ok: bool | None = None  # confirmed on first use
        self._jpeg_lock = threading.Lock()
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

    def encoded_codec(self) -> str | None:
        if self._jpeg_prefix is None or self._jpeg_ok is False:
            return None
        if self._jpeg_ok:
            return JPEG
        with self._jpeg_lock:
            if self._jpeg_ok is None:
                self._jpeg_ok = self._check_jpeg()
        return JPEG if self._jpeg_ok else None

    def encoded(self, row: int, col: int) -> bytes | None:
        """Tile (row, col) as a standalone JPEG, None when it has no readable stream."""
        if self._jpeg_prefix is None or self.problem(row, col) is not None:
            return None
        index = self._segments(row, col)[0]
        data = os.pread(self._fd, int(self._counts[index]), int(self._offsets[index]))
        if len(data) < 4 or not data.startswith(_SOI):
            return None
        return data[:2] + self._jpeg_prefix + data[2:]

    def _check_jpeg(self) -> bool:
        """Whether the first readable tile is a baseline 8-bit RGB/YCbCr stream of a whole tile that
        imagecodecs, left to the stream's own colour signalling, decodes to tifffile's pixels."""
        import imagecodecs

        rows, cols = -(-self._shape[0] // self.tile[0]), self._tiles_across
        for k in range(min(_JPEG_CHECK_TILES, rows * cols)):
            row, col = divmod(k, cols)
            stream = self.encoded(row, col)
            frame = None if stream is None else _jpeg_frame(stream)
            if stream is None or frame is None:
                continue
            if frame[0] not in _BASELINE_FRAMES or frame[1:] != (8, 3):
                return False
            try:
                mine, ref = imagecodecs.jpeg8_decode(stream), self.read(row, col)
            except Exception:  # a damaged tile: judge by the next one
                continue
            if mine.shape != (*self.tile, 3) or ref.ndim != 3:
                return False
            h, w = ref.shape[:2]
            return int(np.abs(mine[:h, :w].astype(np.int16) - ref).max()) <= 1
        return False


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

    def encoded_codec(self, level: int) -> str | None:
        source = self._levels[level]
        return source.encoded_codec() if isinstance(source, _SegmentLevel) else None

    def encoded_tile(self, level: int, row: int, col: int) -> EncodedTile | None:
        codec = self.encoded_codec(level)
        source = self._levels[level]
        data = source.encoded(row, col) if codec and isinstance(source, _SegmentLevel) else None
        return None if data is None or codec is None else EncodedTile(codec, data)

    def associated_image(self, name: str) -> np.ndarray:
        return pil_associated_image(self._slide.associated_images, self.path, name)

    def close(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            os.close(self._fd)
        self._slide.close()
