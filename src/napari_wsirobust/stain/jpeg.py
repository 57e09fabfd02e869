"""JPEG quality of a slide's tiles, read from the quantisation tables in the file (no Qt, no decoding).

A JPEG stream stores its quantisation tables in DQT segments (in zig-zag order). Encoders following
the IJG convention (libjpeg, and so most scanners' software and Pillow) scale the standard luminance
table of the JPEG specification (Annex K) by S = 5000 // q for quality q < 50, else 200 - 2 q, as
T = clip((base * S + 50) // 100, 1, 255), in integers. The quality is the q whose scaled table is nearest
the file's luminance table; the residual says how well the IJG convention fits (0: exactly).
For tiled TIFFs (SVS...) the tables are in the JPEGTables tag, or in each tile's stream.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

# Annex K luminance table, natural (row-major) order
BASE_LUMINANCE = np.array(
    [
        16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
        14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
        18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
        49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
    ],
    dtype=np.float64,
)  # fmt: skip
ZIGZAG = np.array(
    [
        0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
        13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
        52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
    ]
)  # fmt: skip


@dataclass(frozen=True)
class JpegQuality:
    quality: int
    residual: float  # mean absolute difference to the IJG table of that quality


def ijg_table(quality: int) -> np.ndarray:
    """The IJG-scaled luminance table (natural order) for ``quality`` in 1..100."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality  # integer arithmetic, as libjpeg
    return np.clip((BASE_LUMINANCE.astype(np.int64) * scale + 50) // 100, 1, 255).astype(np.float64)


def luminance_table(stream: bytes) -> np.ndarray | None:
    """The first (id 0) quantisation table of a JPEG stream or tables-only stream, natural order."""
    i = 2 if stream[:2] == b"\xff\xd8" else 0
    while i + 4 <= len(stream):
        if stream[i] != 0xFF:
            return None
        marker = stream[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan: no table before it
            return None
        length = int.from_bytes(stream[i + 2 : i + 4], "big")
        if marker == 0xDB:
            j, end = i + 4, i + 2 + length
            while j < end:
                precision, table_id = stream[j] >> 4, stream[j] & 0x0F
                size = 128 if precision else 64
                raw = stream[j + 1 : j + 1 + size]
                values = np.frombuffer(raw, dtype=">u2" if precision else np.uint8).astype(np.float64)
                if table_id == 0 and len(values) == 64:
                    natural = np.empty(64)
                    natural[ZIGZAG] = values
                    return natural
                j += 1 + size
        i += 2 + length
    return None


def estimate_quality(table: np.ndarray) -> JpegQuality:
    errors = [float(np.abs(ijg_table(q) - table).mean()) for q in range(1, 101)]
    best = int(np.argmin(errors))
    return JpegQuality(best + 1, errors[best])


def jpeg_quality_of_stream(stream: bytes) -> JpegQuality | None:
    table = luminance_table(stream)
    return None if table is None else estimate_quality(table)


def jpeg_quality_of_slide(path: str | os.PathLike[str]) -> JpegQuality | None:
    """Quality of the level-0 tiles of a JPEG-compressed TIFF slide; None for other compressions or
    files whose tables cannot be read."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            if page.compression != 7:  # not JPEG
                return None
            tables = getattr(page, "jpegtables", None)
            if tables:
                found = jpeg_quality_of_stream(bytes(tables))
                if found is not None:
                    return found
            offset = next((o for o, n in zip(page.dataoffsets, page.databytecounts) if n), None)
            if offset is None:
                return None
            fh = tif.filehandle
            fh.seek(offset)
            return jpeg_quality_of_stream(fh.read(min(65536, page.databytecounts[0] or 65536)))
    except (tifffile.TiffFileError, OSError, ValueError, IndexError):
        return None
