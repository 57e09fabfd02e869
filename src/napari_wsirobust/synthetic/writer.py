"""Write a tiled, JPEG-compressed pyramidal TIFF from horizontal bands, with bounded memory.

Level 0 is streamed tile row by tile row straight from the band iterator; reduced levels (2x box
downsampling, see ``spool``) are built from the same bands, parked in anonymous temporary files and
written afterwards, tile row by tile row, as SubIFDs: the layout tifffile and tiffslide read as a
generic pyramid. The physical pixel size is stored in the standard
resolution tags (pixels per centimetre), which tiffslide turns into ``tiffslide.mpp-x/y``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

from .spool import LevelSpool, downsample2

__all__ = ["TILE", "downsample2", "level_count_for", "write_pyramid_from_bands"]

TILE = 256


def level_count_for(width: int, height: int, min_levels: int = 3, smallest: int = 256) -> int:
    """Number of 2x levels: down to about ``smallest`` px on the short side, and at least
    ``min_levels`` (as long as the smallest level keeps at least 16 px)."""
    levels = 1
    while min(width, height) / 2**levels >= smallest:
        levels += 1
    while levels < min_levels and min(width, height) / 2**levels >= 16:
        levels += 1
    return levels


def _tiles_of_band(band: np.ndarray, width: int) -> Iterator[np.ndarray]:
    padded = band
    if band.shape[0] < TILE:
        padded = np.zeros((TILE, band.shape[1], 3), np.uint8)
        padded[: band.shape[0]] = band
    for x in range(0, width, TILE):
        tile = padded[:, x : x + TILE]
        if tile.shape[1] < TILE:
            full = np.zeros((TILE, TILE, 3), np.uint8)
            full[:, : tile.shape[1]] = tile
            tile = full
        yield np.ascontiguousarray(tile)


def write_pyramid_from_bands(
    path: str | os.PathLike[str],
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    mpp: float,
    jpeg_quality: int = 90,
    description: str = "",
    min_levels: int = 3,
) -> list[tuple[int, int]]:
    """Write a pyramidal TIFF whose level 0 is the concatenation of ``bands`` (each ``TILE`` rows
    tall except possibly the last, all ``width`` wide). Returns the (width, height) of each level.

    Memory stays at a few bands whatever the slide size: the reduced levels wait in anonymous
    temporary files beside ``path`` (about ``width * height`` bytes of disk, 1.2 GB at
    40000x30000). The file is written to a temporary name and renamed, so a killed process never
    leaves a truncated slide under the final name.
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        with LevelSpool(level_count_for(width, height, min_levels) - 1, width, path.parent) as spool:
            sizes = _write_levels(tmp, bands, width, height, mpp, jpeg_quality, description, spool)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)
    return sizes


def _write_levels(
    tmp: Path,
    bands: Iterable[np.ndarray],
    width: int,
    height: int,
    mpp: float,
    jpeg_quality: int,
    description: str,
    spool: LevelSpool,
) -> list[tuple[int, int]]:
    common = dict(
        photometric="rgb",
        compression="jpeg",
        compressionargs={"level": int(jpeg_quality)},
        resolutionunit="CENTIMETER",
        metadata=None,
        tile=(TILE, TILE),
        dtype=np.uint8,
    )
    resolution = (1e4 / mpp, 1e4 / mpp)
    levels = len(spool.widths)
    with tifffile.TiffWriter(tmp, bigtiff=width * height * 3 > 2**31) as tif:
        tif.write(
            _level0_tiles(bands, width, spool),
            shape=(height, width, 3),
            subifds=levels,
            description=description,
            resolution=resolution,
            software="napari-wsirobust synthetic",
            **common,
        )
        if spool.rows != height:
            raise ValueError(f"bands covered {spool.rows} rows, expected {height}")
        for k in range(1, levels + 1):
            w, h = spool.widths[k - 1], spool.heights[k - 1]
            tif.write(
                (tile for band in spool.bands(k, TILE) for tile in _tiles_of_band(band, w)),
                shape=(h, w, 3),
                subfiletype=1,
                resolution=(resolution[0] / 2**k, resolution[1] / 2**k),
                **common,
            )
    return [(width, height), *zip(spool.widths, spool.heights)]


def _level0_tiles(bands: Iterable[np.ndarray], width: int, spool: LevelSpool) -> Iterator[np.ndarray]:
    for band in bands:
        if band.shape[1] != width or band.shape[2] != 3:
            raise ValueError(f"band of shape {band.shape} does not match width {width}")
        spool.push(band)
        yield from _tiles_of_band(band, width)
