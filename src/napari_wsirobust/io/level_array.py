"""Array views of pyramid levels that assemble file tiles on demand.

:class:`TileReader` turns a backend's ``read_tile`` into safe, colour-managed, cached tiles: a tile
that fails to decode becomes a blank tile of the slide's background and is recorded in the
:class:`DamageLog`. :class:`LevelArray` slices like a NumPy array (napari reads it directly) and
decodes only the tiles a slice touches, several at once in a small thread pool.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .damage import DamagedTile, DamageLog, UnreadableRegionError
from .source import EncodedTile, LevelSpec, TileSource, exception_summary

DEFAULT_CACHE_BYTES = 64 * 2**20
PARALLEL_FROM_TILES = 3
_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            workers = max(2, min(8, os.cpu_count() or 2))
            _POOL = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="wsirobust-decode")
        return _POOL


class TileReader:
    """Decoded tiles of every level of one source, with damage handling, an optional colour
    transform and an LRU cache of ``cache_bytes``."""

    def __init__(
        self,
        source: TileSource,
        damage: DamageLog,
        background: int,
        transform: Callable[[np.ndarray], np.ndarray] | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        self.source = source
        self.damage = damage
        self.background = background
        self._transform = transform
        self._cache: OrderedDict[tuple[int, int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached = 0
        self._lock = threading.Lock()

    def spec(self, level: int) -> LevelSpec:
        return self.source.levels[level]

    def clear_cache(self) -> None:
        with self._lock:
            self._cache.clear()
            self._cached = 0

    def tile(self, level: int, row: int, col: int) -> tuple[np.ndarray, bool]:
        """Tile (row, col) of ``level`` and whether it was read (False: blank stand-in)."""
        key = (level, row, col)
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit, True
        if self.damage.has(level, row, col):
            return self._blank(level, row, col), False
        reason = self.source.tile_problem(level, row, col)
        if reason is None:
            try:
                tile = self._fit(level, row, col, self.source.read_tile(level, row, col))
                if self._transform is not None:
                    tile = self._transform(tile)
            except Exception as exc:  # any decoder failure costs this tile only
                reason = (
                    f"{type(exc).__name__}: {exception_summary(exc, 120)}"
                    if str(exc).strip()
                    else type(exc).__name__
                )
        if reason is not None:
            self.damage.add(DamagedTile(level, row, col, self.spec(level).tile_box(row, col), reason))
            return self._blank(level, row, col), False
        self._remember(key, tile)
        return tile, True

    def encoded_codec(self, level: int) -> str | None:
        """The codec of ``level``'s stored tiles when they are offered encoded: never with a colour
        transform, whose pixels only the decoded path gives."""
        if self._transform is not None or not 0 <= level < len(self.source.levels):
            return None
        return self.source.encoded_codec(level)

    def encoded(self, level: int, row: int, col: int) -> EncodedTile | None:
        """Tile (row, col)'s stored stream, or None where only :meth:`tile` can say what it holds
        (a tile already found damaged, or one the backend cannot give)."""
        if self.encoded_codec(level) is None or self.damage.has(level, row, col):
            return None
        return self.source.encoded_tile(level, row, col)

    def _fit(self, level: int, row: int, col: int, tile: np.ndarray) -> np.ndarray:
        """The tile with the level's channels (alpha dropped) and exactly its box's size."""
        spec = self.spec(level)
        x0, y0, x1, y1 = spec.tile_box(row, col)
        if tile.ndim == 3 and len(spec.shape) == 3 and tile.shape[2] != spec.shape[2]:
            tile = tile[..., : spec.shape[2]]
        if tile.shape[:2] != (y1 - y0, x1 - x0) or tile.dtype != spec.dtype:
            raise ValueError(
                f"decoded to {tile.shape} {tile.dtype}, expected {(y1 - y0, x1 - x0)} {spec.dtype}"
            )
        return tile

    def _blank(self, level: int, row: int, col: int) -> np.ndarray:
        """A read-only tile of background: a broadcast view, which costs no memory however large
        the damaged tile (a whole-image strip) claims to be."""
        spec = self.spec(level)
        x0, y0, x1, y1 = spec.tile_box(row, col)
        return np.broadcast_to(np.array(self.background, spec.dtype), (y1 - y0, x1 - x0, *spec.shape[2:]))

    def _remember(self, key: tuple[int, int, int], tile: np.ndarray) -> None:
        if self._cache_bytes <= 0:
            return
        with self._lock:
            if key in self._cache:
                return
            self._cache[key] = tile
            self._cached += tile.nbytes
            while self._cached > self._cache_bytes and self._cache:
                _, old = self._cache.popitem(last=False)
                self._cached -= old.nbytes


class _LazyLevel:
    """Shared NumPy-style indexing over a ``window`` reader."""

    shape: tuple[int, ...]
    dtype: np.dtype
    ndim: int
    tile: tuple[int, int]

    def window(
        self, y0: int, y1: int, x0: int, x1: int, fill: int | None = None, strict: bool = False
    ) -> np.ndarray:
        raise NotImplementedError

    @property
    def chunks(self) -> tuple[int, ...]:
        """Chunk shape: one file tile (and every channel)."""
        return (*self.tile, *self.shape[2:])

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def __getitem__(self, key: Any) -> np.ndarray:
        rows, cols, rest, squeeze = _split_key(key, self.ndim)
        y0, y1, ys = rows.indices(self.shape[0])
        x0, x1, xs = cols.indices(self.shape[1])
        if ys < 0 or xs < 0:
            raise IndexError("negative steps are not supported")
        out = self.window(y0, max(y0, y1), x0, max(x0, x1))
        if ys != 1 or xs != 1:
            out = out[::ys, ::xs]
        if rest:
            out = out[(slice(None), slice(None), *rest)]
        return out[tuple(0 if sq else slice(None) for sq in squeeze)] if any(squeeze) else out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self.window(0, self.shape[0], 0, self.shape[1])
        return out.astype(dtype) if dtype is not None else out

    def __len__(self) -> int:
        return self.shape[0]


class LevelArray(_LazyLevel):
    """One stored level as a lazy (H, W[, C]) array: slicing decodes only the file tiles touched."""

    def __init__(self, reader: TileReader, level: int) -> None:
        self._reader = reader
        self.level = level
        spec = reader.spec(level)
        channels = spec.shape[2:]
        if channels and channels[0] == 4:
            channels = (3,)
        self.shape: tuple[int, ...] = (spec.shape[0], spec.shape[1], *channels)
        self.dtype = spec.dtype
        self.ndim = len(self.shape)
        self.tile = spec.tile

    def window(
        self, y0: int, y1: int, x0: int, x1: int, fill: int | None = None, strict: bool = False
    ) -> np.ndarray:
        """Pixels ``[y0, y1) x [x0, x1)``; outside the level is ``fill`` (default: background).
        ``strict`` raises :class:`UnreadableRegionError` when a damaged file tile is touched."""
        fill = self._reader.background if fill is None else fill
        out = np.full((max(0, y1 - y0), max(0, x1 - x0), *self.shape[2:]), fill, self.dtype)
        H, W = self.shape[:2]
        ya, yb, xa, xb = max(0, y0), min(H, y1), max(0, x0), min(W, x1)
        if ya >= yb or xa >= xb:
            return out
        th, tw = self.tile
        keys = [
            (r, c) for r in range(ya // th, (yb - 1) // th + 1) for c in range(xa // tw, (xb - 1) // tw + 1)
        ]
        if len(keys) >= PARALLEL_FROM_TILES:
            tiles = list(_pool().map(lambda rc: self._reader.tile(self.level, *rc), keys))
        else:
            tiles = [self._reader.tile(self.level, r, c) for r, c in keys]
        bad = []
        for (r, c), (tile, ok) in zip(keys, tiles):
            if not ok:
                bad.append((r, c))
            ty, tx = r * th, c * tw
            sy0, sy1 = max(ya, ty), min(yb, ty + tile.shape[0])
            sx0, sx1 = max(xa, tx), min(xb, tx + tile.shape[1])
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = tile[sy0 - ty : sy1 - ty, sx0 - tx : sx1 - tx]
        if strict and bad:
            log = {(t.level, t.row, t.col): t for t in self._reader.damage.tiles}
            raise UnreadableRegionError(
                [log[(self.level, r, c)] for r, c in bad if (self.level, r, c) in log]
            )
        return out

    def __repr__(self) -> str:
        return f"LevelArray(level={self.level}, shape={self.shape}, tile={self.tile}, dtype={self.dtype})"


class StridedLevel(_LazyLevel):
    """An overview level computed on demand from ``base`` by taking every ``factor``-th pixel (for
    single-level images, so a viewer never decodes the whole image for an overview)."""

    def __init__(self, base: LevelArray, factor: int) -> None:
        self._base = base
        self.factor = factor
        self.shape = (-(-base.shape[0] // factor), -(-base.shape[1] // factor), *base.shape[2:])
        self.dtype = base.dtype
        self.ndim = base.ndim
        self.tile = (max(1, base.tile[0] // factor), max(1, base.tile[1] // factor))
        self.level = base.level

    def window(
        self, y0: int, y1: int, x0: int, x1: int, fill: int | None = None, strict: bool = False
    ) -> np.ndarray:
        """Pixels ``[y0, y1) x [x0, x1)`` of the overview, strided out of one base tile at a time, so
        memory stays at the output plus one decoded tile however large the full-resolution window."""
        f, base = self.factor, self._base
        fill = base._reader.background if fill is None else fill
        out = np.full((max(0, y1 - y0), max(0, x1 - x0), *self.shape[2:]), fill, self.dtype)
        ya, yb = max(0, y0), min(self.shape[0], y1)
        xa, xb = max(0, x0), min(self.shape[1], x1)
        if ya >= yb or xa >= xb:
            return out
        th, tw = base.tile
        for r in range(ya * f // th, (yb - 1) * f // th + 1):
            i0, i1 = max(ya, -(-r * th // f)), min(yb, -(-(r + 1) * th // f))
            for c in range(xa * f // tw, (xb - 1) * f // tw + 1):
                j0, j1 = max(xa, -(-c * tw // f)), min(xb, -(-(c + 1) * tw // f))
                if i0 >= i1 or j0 >= j1:
                    continue
                tile, ok = base._reader.tile(base.level, r, c)
                if not ok and strict:
                    raise UnreadableRegionError(
                        [
                            t
                            for t in base._reader.damage.tiles
                            if (t.level, t.row, t.col) == (base.level, r, c)
                        ]
                    )
                rows = slice(i0 * f - r * th, (i1 - 1) * f - r * th + 1, f)
                cols = slice(j0 * f - c * tw, (j1 - 1) * f - c * tw + 1, f)
                out[i0 - y0 : i1 - y0, j0 - x0 : j1 - x0] = tile[rows, cols]
        return out


def _split_key(key: Any, ndim: int) -> tuple[slice, slice, tuple[Any, ...], tuple[bool, bool]]:
    """(rows, cols, rest, squeeze) of an indexing key; an integer row or column becomes a
    one-element slice whose axis is squeezed afterwards."""
    if not isinstance(key, tuple):
        key = (key,)
    if any(k is Ellipsis for k in key):
        i = key.index(Ellipsis)
        key = key[:i] + (slice(None),) * (ndim - len(key) + 1) + key[i + 1 :]
    key = key + (slice(None),) * (ndim - len(key))
    if len(key) > ndim:
        raise IndexError(f"too many indices for a {ndim}-D level")
    axes, squeeze = [], []
    for k in key[:2]:
        if isinstance(k, (int, np.integer)):
            i = int(k)
            axes.append(slice(i, i + 1) if i != -1 else slice(-1, None))
            squeeze.append(True)
        elif isinstance(k, slice):
            axes.append(k)
            squeeze.append(False)
        else:
            raise IndexError("levels are indexed with integers or slices on the two image axes")
    return axes[0], axes[1], tuple(key[2:]), (squeeze[0], squeeze[1])
