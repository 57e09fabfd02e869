"""What every slide backend provides: level shapes, file tiles decoded one at a time, metadata and,
where the format allows, a file tile's stored bytes as a standalone stream (:class:`EncodedTile`).

A backend (:mod:`.tiff_source`, :mod:`.openslide_source`, :mod:`.dicom_source`) knows how to open
one kind of file and decode one stored tile; everything else (arrays, blank tiles for damaged data,
colour management, napari layers) is shared in :mod:`.level_array` and :mod:`.slide`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LevelSpec:
    """One stored pyramid level: (height, width[, channels]) shape, dtype and the file's tile
    (height, width) - whole strips or groups of strips for strip TIFFs."""

    shape: tuple[int, ...]
    dtype: np.dtype
    tile: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, cols) of tiles."""
        th, tw = self.tile
        return -(-self.shape[0] // th), -(-self.shape[1] // tw)

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of tile (row, col), clipped to the level."""
        th, tw = self.tile
        y0, x0 = row * th, col * tw
        return x0, y0, min(x0 + tw, self.shape[1]), min(y0 + th, self.shape[0])


@dataclass(frozen=True)
class EncodedTile:
    """The stored bytes of one file tile as a standalone stream that a standard decoder turns into the
    pixels ``read_tile`` gives (within one grey level).

    ``codec`` is ``"jpeg"`` (baseline, 8-bit, three components; JPEG tables and colour signalling
    spliced in). The stream decodes to a whole file tile (``LevelSpec.tile``); crop it to
    ``LevelSpec.tile_box`` at the level's edges.
    """

    codec: str
    data: bytes


@dataclass
class SourceInfo:
    """Metadata a backend reads from the file (None where the file does not say)."""

    vendor: str | None = None
    mpp: tuple[float | None, float | None] = (None, None)
    objective_power: float | None = None
    icc_profile: bytes | None = None
    associated: list[str] = field(default_factory=list)
    storage: str = "tiled"  # "tiled" or "strips"
    notes: list[str] = field(default_factory=list)


def exception_summary(exc: BaseException, limit: int = 160) -> str:
    """The first line of an exception's message, shortened to ``limit`` characters (its type when
    it has no message), for one-sentence reasons."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def pil_associated_image(images: Mapping[str, Any], path: Path, name: str) -> np.ndarray:
    """RGB pixels of ``images[name]`` (a mapping of PIL images, as tiffslide and OpenSlide give)."""
    if name not in images:
        raise KeyError(f"{path.name} has no associated image {name!r}")
    return np.asarray(images[name].convert("RGB"))


class TileSource(ABC):
    """An open slide file that decodes stored tiles on request. Thread-safe ``read_tile``."""

    backend: str = ""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.levels: list[LevelSpec] = []
        self.info = SourceInfo()

    @abstractmethod
    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        """Decoded tile (row, col) of ``level``, clipped to the level: (h, w[, c]) array. Raises on
        data that cannot be decoded."""

    def tile_problem(self, level: int, row: int, col: int) -> str | None:
        """Why tile (row, col) cannot be read, when that is known without decoding (e.g. its bytes
        lie past the end of the file); None otherwise."""
        return None

    def encoded_codec(self, level: int) -> str | None:
        """The codec of ``level``'s file tiles when :meth:`encoded_tile` gives them, else None (the
        default: this backend or level offers decoded tiles only)."""
        return None

    def encoded_tile(self, level: int, row: int, col: int) -> EncodedTile | None:
        """Tile (row, col) of ``level`` as an :class:`EncodedTile`, or None: not offered for this
        level, or the tile cannot be read (:meth:`tile_problem`, or bytes that are not a stream of
        the codec), which decoding it through :meth:`read_tile` reports."""
        return None

    def associated_image(self, name: str) -> np.ndarray:
        """An associated image (label, macro, thumbnail) as RGB."""
        raise KeyError(f"{self.path.name} has no associated image {name!r}")

    def close(self) -> None:  # noqa: B027 - optional for backends with nothing to release
        """Release file handles."""
