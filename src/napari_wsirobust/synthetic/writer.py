"""Write a tiled, JPEG-compressed pyramidal TIFF from horizontal bands, with bounded memory.

Level 0 is streamed tile row by tile row straight from the band iterator; reduced levels (2x box
downsampling) are accumulated at half resolution and written afterwards as SubIFDs, the layout
tifffile and tiffslide read as a generic pyramid. The physical pixel size is stored in the standard
resolution tags (pixels per centimetre), which tiffslide turns into ``tiffslide.mpp-x/y``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import tifffile

TILE = 256


def downsample2(image: np.ndarray) -> np.ndarray:
    """2x2 box downsampling of an (H, W, C) uint8 image (odd edges are dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    view = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.uint16)
    return ((view.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


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

    The file is written to a temporary name and renamed, so a killed process never leaves a
    truncated slide under the final name.
    """
    path = Path(path)
    n_levels = level_count_for(width, height, min_levels)
    reduced: list[np.ndarray] = []
    rows_seen = 0

    def level0_tiles() -> Iterator[np.ndarray]:
        nonlocal rows_seen
        for band in bands:
            if band.shape[1] != width or band.shape[2] != 3:
                raise ValueError(f"band of shape {band.shape} does not match width {width}")
            rows_seen += band.shape[0]
            if n_levels > 1:
                reduced.append(downsample2(band))
            yield from _tiles_of_band(band, width)

    common = dict(
        photometric="rgb",
        tile=(TILE, TILE),
        compression="jpeg",
        compressionargs={"level": int(jpeg_quality)},
        resolutionunit="CENTIMETER",
        metadata=None,
    )
    bigtiff = width * height * 3 > 2**31
    tmp = path.with_name(path.name + ".partial")
    resolution = (1e4 / mpp, 1e4 / mpp)
    with tifffile.TiffWriter(tmp, bigtiff=bigtiff) as tif:
        tif.write(
            level0_tiles(),
            shape=(height, width, 3),
            dtype=np.uint8,
            subifds=n_levels - 1,
            description=description,
            resolution=resolution,
            software="napari-wsirobust synthetic",
            **common,
        )
        if rows_seen != height:
            raise ValueError(f"bands covered {rows_seen} rows, expected {height}")
        sizes = [(width, height)]
        if n_levels > 1:
            level = np.concatenate(reduced, axis=0)
            del reduced[:]
            for k in range(1, n_levels):
                if k > 1:
                    level = downsample2(level)
                scale = 2**k
                tif.write(
                    level,
                    subfiletype=1,
                    resolution=(resolution[0] / scale, resolution[1] / scale),
                    **common,
                )
                sizes.append((level.shape[1], level.shape[0]))
    os.replace(tmp, path)
    return sizes
