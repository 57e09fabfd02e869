"""Grid tiles decoded, assembled and resized on the model's device.

:class:`DeviceTileReader` turns one batch of grid tiles into the normalised (B, 3, S, S) tensor the
encoder takes, with the pixels :func:`~napari_wsirobust.tiling.read_tile` gives. The file tiles the
batch's windows cover are fetched as standalone JPEG streams (:meth:`WSI.encoded_tile`) and decoded
in one batched ``torchvision.io.decode_jpeg`` call on the device (nvJPEG on CUDA, libjpeg-turbo on
the CPU); the windows are cut out of them with one gather and resized with PIL's own filter
coefficients and integer arithmetic (BOX when shrinking, BILINEAR otherwise, rounded between the
horizontal and the vertical pass as PIL does), so they equal PIL's result exactly.

A grid tile that touches anything else - another codec or backend, a damaged or missing file tile,
a level whose device decoder disagrees with the CPU decoder by more than ``tolerance`` grey levels
(checked once per level, on a few tiles, before the level's first batch), a tile transform - is read
on the CPU by ``read_tile`` exactly as the default path reads it (a damaged one is flagged, its
embedding row becomes NaN) and copied over from pinned memory.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..encoders import TileEncoder, import_backends
from ..io import WSI, EncodedTile, UnreadableRegionError
from ..stain import TileTransform
from ..tiling import TileGrid, read_tile

PRECISION_BITS = 22  # PIL's fixed-point resampling: 32 bits - 8 for the result - 2 for overflow
MAX_READERS = 8
CHECK_TILES = 3
FILL = 255  # what read_tile reads outside the level


def default_readers() -> int:
    """Reader threads for this machine: its cores, at least 2 and at most :data:`MAX_READERS`."""
    return max(2, min(MAX_READERS, os.cpu_count() or 2))


def read_host_tiles(
    slide: WSI, grid: TileGrid, indices: np.ndarray, transform: TileTransform | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(tiles (B, S, S, 3) uint8, unreadable (B,) bool) read on the CPU: a tile over a damaged file
    tile is left blank (255) and flagged."""
    tiles, unreadable = [], np.zeros(len(indices), bool)
    for k, i in enumerate(indices):
        try:
            tile = read_tile(slide, grid, int(i), strict=True)
        except UnreadableRegionError:
            unreadable[k] = True
            tile = np.full((grid.config.tile_size, grid.config.tile_size, 3), FILL, np.uint8)
        else:
            if transform is not None:
                tile = transform(tile, int(grid.rows[i]), int(grid.cols[i]))
        tiles.append(tile)
    return np.stack(tiles), unreadable


@dataclass(frozen=True)
class Windows:
    """Where grid tiles lie in their read level (the arithmetic of ``read_tile``): integer windows
    ``[ya, yb) x [xa, xb)`` and, inside each, the float ``box`` (x0, y0, x1, y1) resized to the tile
    size; ``bilinear`` False means PIL's BOX filter (shrinking)."""

    xa: np.ndarray
    ya: np.ndarray
    xb: np.ndarray
    yb: np.ndarray
    box: np.ndarray  # (B, 4) float64
    bilinear: bool
    identity: np.ndarray  # (B,) bool: the window is the tile, nothing to resize

    @classmethod
    def of(cls, slide: WSI, grid: TileGrid, indices: np.ndarray) -> Windows:
        dx, dy = slide.level_downsample(grid.read_level)
        x0, y0 = grid.x0[indices] / dx, grid.y0[indices] / dy
        w, h = grid.tile_size_level0[0] / dx, grid.tile_size_level0[1] / dy
        xa, ya = np.floor(x0).astype(np.int64), np.floor(y0).astype(np.int64)
        xb, yb = np.ceil(x0 + w).astype(np.int64), np.ceil(y0 + h).astype(np.int64)
        box = np.column_stack([x0 - xa, y0 - ya, x0 - xa + w, y0 - ya + h])
        ts = grid.config.tile_size
        identity = (yb - ya == ts) & (xb - xa == ts) & (box == [0.0, 0.0, ts, ts]).all(axis=1)
        return cls(xa, ya, xb, yb, box, bilinear=not w > ts, identity=identity)


def pil_taps(
    in_size: np.ndarray, b0: np.ndarray, b1: np.ndarray, out: int, bilinear: bool
) -> tuple[np.ndarray, np.ndarray]:
    """PIL's resampling coefficients along one axis for each of B rows: (start (B, out) int64, weights
    (B, out, K) int32 in units of 2**-22), from input sizes, float box edges ``b0``/``b1`` (rounded
    to float32, as PIL takes them) and the output size."""
    f0, f1 = np.asarray(b0, np.float32), np.asarray(b1, np.float32)
    scale = (f1 - f0).astype(np.float64) / out
    filterscale = np.maximum(scale, 1.0)
    support = (1.0 if bilinear else 0.5) * filterscale
    taps = int(np.ceil(support.max())) * 2 + 1
    centre = f0.astype(np.float64)[:, None] + (np.arange(out) + 0.5) * scale[:, None]
    start = np.maximum(np.trunc(centre - support[:, None] + 0.5), 0.0)
    stop = np.minimum(np.trunc(centre + support[:, None] + 0.5), np.asarray(in_size)[:, None])
    k = np.arange(taps)
    x = (start[..., None] + k - centre[..., None] + 0.5) * (1.0 / filterscale)[:, None, None]
    weights = np.clip(1.0 - np.abs(x), 0.0, None) if bilinear else ((x > -0.5) & (x <= 0.5)) * 1.0
    weights = np.where(k < (stop - start)[..., None], weights, 0.0)
    total = np.cumsum(weights, axis=-1)[..., -1:]  # summed in order, as PIL does
    weights = np.divide(weights, total, out=np.zeros_like(weights), where=total != 0)
    fixed = np.trunc(0.5 + weights * (1 << PRECISION_BITS)).astype(np.int32)
    return start.astype(np.int64), fixed


def _resample(lines: torch.Tensor, start: np.ndarray, fixed: np.ndarray) -> torch.Tensor:
    """One PIL pass along axis 1 of (B, L, M) int32 pixels (each of the L lines holds M values):
    ``sum(pixel * weight) + 2**21 >> 22`` clipped to 0..255, (B, out, M)."""
    b, length, m = lines.shape
    out = start.shape[1]
    dev = lines.device
    flat = lines.reshape(b * length, m)
    first = torch.from_numpy(start + (np.arange(b) * length)[:, None]).to(dev, non_blocking=True)
    last = torch.from_numpy((np.arange(b) * length + length - 1)[:, None]).to(dev, non_blocking=True)
    weights = torch.from_numpy(fixed).to(dev, non_blocking=True)
    acc = torch.full((b * out, m), 1 << (PRECISION_BITS - 1), dtype=torch.int32, device=dev)
    for k in range(fixed.shape[-1]):
        index = torch.minimum(first + k, last).reshape(-1)
        acc += flat.index_select(0, index) * weights[..., k].reshape(-1, 1)
    return (acc >> PRECISION_BITS).clamp_(0, 255).view(b, out, m)


def resize_like_pil(columns: torch.Tensor, windows: Windows, size: int) -> torch.Tensor:
    """(B, W, H, 3) uint8 windows stored column-major (each in the top-left of its slot) ->
    (B, size, size, 3) uint8, equal to PIL's ``resize((size, size), BOX or BILINEAR, box=...)`` of
    each window."""
    if windows.identity.all():
        return columns[:, :size, :size].transpose(1, 2)
    b, w, h, _ = columns.shape
    heights, widths = windows.yb - windows.ya, windows.xb - windows.xa
    box = windows.box
    x = _resample(
        columns.reshape(b, w, h * 3).to(torch.int32),
        *pil_taps(widths, box[:, 0], box[:, 2], size, windows.bilinear),
    )
    x = x.view(b, size, h, 3).transpose(1, 2).reshape(b, h, size * 3)
    x = _resample(x, *pil_taps(heights, box[:, 1], box[:, 3], size, windows.bilinear))
    return x.view(b, size, size, 3).to(torch.uint8)


@dataclass
class DeviceReadStats:
    """What a :class:`DeviceTileReader` did: batches, batched decode calls (one per batch with
    device tiles) and level-check calls, grid tiles made on the device or read on the CPU, file
    tiles decoded, and the largest decoder difference found per checked level (None: the level's
    tiles are not offered encoded)."""

    batches: int = 0
    decode_calls: int = 0
    check_calls: int = 0
    device_tiles: int = 0
    host_tiles: int = 0
    file_tiles_decoded: int = 0
    level_check: dict[int, int | None] = field(default_factory=dict)


@dataclass
class DeviceBatch:
    """A normalised (B, 3, S, S) batch on the device, the grid tiles that could not be read, and the
    CUDA event after which ``x`` is ready (None off CUDA)."""

    x: torch.Tensor
    unreadable: np.ndarray
    event: Any = None

    def ready(self) -> torch.Tensor:
        """``x``, once the current stream has waited for the reader's work."""
        if self.event is not None:
            stream = torch.cuda.current_stream(self.x.device)
            stream.wait_event(self.event)
            self.x.record_stream(stream)
        return self.x


def _decoder() -> Callable[..., list[torch.Tensor]]:
    import_backends()  # torchvision through timm's safe import
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(streams: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
        out = decode_jpeg(streams, mode=ImageReadMode.RGB, device=device)
        return out if isinstance(out, list) else [out]

    return decode


class DeviceTileReader:
    """Batches of ``grid``'s tiles as normalised device tensors for ``encoder`` (see the module).

    ``read(indices)`` is thread-safe: the pipeline calls it from several reader threads, each of
    which works on its own CUDA stream. ``transform`` (applied per tile on the CPU) sends every tile
    through the CPU path; ``tolerance`` is the largest decoder difference (grey levels) accepted;
    ``stats`` (a :class:`DeviceReadStats`) is filled in as batches are read.
    """

    def __init__(
        self,
        slide: WSI,
        grid: TileGrid,
        encoder: TileEncoder,
        device: torch.device,
        *,
        transform: TileTransform | None = None,
        tolerance: int = 1,
        stats: DeviceReadStats | None = None,
    ) -> None:
        self.slide, self.grid, self.encoder, self.device = slide, grid, encoder, torch.device(device)
        self.transform = transform
        self.tolerance = tolerance
        self.stats = stats if stats is not None else DeviceReadStats()
        level = grid.read_level
        codec = slide.encoded_codec(level) if transform is None and slide.metadata.is_rgb else None
        self._jpeg: bool | None = None if codec == "jpeg" else False  # None: not checked yet
        if self._jpeg is False:
            self.stats.level_check[level] = None
        array = slide.arrays[level]
        self._tile = (int(array.tile[0]), int(array.tile[1]))
        self._shape = (int(array.shape[0]), int(array.shape[1]))
        self._decode = _decoder() if self._jpeg is None else None
        self._lock = threading.Lock()
        self._local = threading.local()

    # -- the batch ---------------------------------------------------------------------------------
    def read(self, indices: np.ndarray) -> DeviceBatch:
        """Grid tiles ``indices`` as a normalised (B, 3, S, S) batch on the device."""
        with self._stream() as event:
            tiles, unreadable = self.read_tiles(indices)
            x = self.encoder.normalise(tiles)
            if event is not None:
                event.record()
        return DeviceBatch(x, unreadable, event)

    def read_tiles(self, indices: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        """Grid tiles ``indices`` as (B, S, S, 3) uint8 on the device (what ``read_tile`` gives) and
        which of them could not be read."""
        indices = np.asarray(indices, np.int64)
        size = self.grid.config.tile_size
        windows = Windows.of(self.slide, self.grid, indices)
        rows, streams = self._encoded_rows(windows)
        decoded: dict[tuple[int, int], torch.Tensor] = {}
        if rows:
            decoded = self._decode_tiles(streams)
            rows = [b for b in rows if all(key in decoded for key in self._covered(windows, b))]
        on_device = set(rows)
        host = [b for b in range(len(indices)) if b not in on_device]
        out = torch.empty((len(indices), size, size, 3), dtype=torch.uint8, device=self.device)
        unreadable = np.zeros(len(indices), bool)
        if rows:
            picked = _subset(windows, rows)
            canvas = self._assemble(picked, decoded)
            out[torch.as_tensor(rows, device=self.device)] = resize_like_pil(canvas, picked, size)
        if host:
            tiles, flagged = read_host_tiles(self.slide, self.grid, indices[host], self.transform)
            unreadable[host] = flagged
            pixels = torch.from_numpy(tiles)
            if self.device.type == "cuda":
                pixels = pixels.pin_memory()
            out[torch.as_tensor(host, device=self.device)] = pixels.to(self.device, non_blocking=True)
        with self._lock:
            self.stats.batches += 1
            self.stats.device_tiles += len(rows)
            self.stats.host_tiles += len(host)
        return out, unreadable

    # -- which file tiles ----------------------------------------------------------------------------
    def _covered(self, windows: Windows, b: int) -> list[tuple[int, int]]:
        """The file tiles (row, col) inside the level that window ``b`` touches."""
        (th, tw), (height, width) = self._tile, self._shape
        ya, yb = max(0, int(windows.ya[b])), min(height, int(windows.yb[b]))
        xa, xb = max(0, int(windows.xa[b])), min(width, int(windows.xb[b]))
        if ya >= yb or xa >= xb:
            return []
        return [
            (r, c) for r in range(ya // th, (yb - 1) // th + 1) for c in range(xa // tw, (xb - 1) // tw + 1)
        ]

    def _encoded_rows(self, windows: Windows) -> tuple[list[int], dict[tuple[int, int], EncodedTile]]:
        """The windows whose file tiles all come as JPEG streams, and those streams."""
        if self._jpeg is False:
            return [], {}
        level = self.grid.read_level
        streams: dict[tuple[int, int], EncodedTile | None] = {}
        rows = []
        for b in range(len(windows.xa)):
            keys = self._covered(windows, b)
            for key in keys:
                if key not in streams:
                    streams[key] = self.slide.encoded_tile(level, *key)
            if all(streams[key] is not None for key in keys):
                rows.append(b)
        found = {k: v for k, v in streams.items() if v is not None and v.codec == "jpeg"}
        if rows and self._jpeg is None and not self._check_level(found):
            return [], {}
        needed = {key for b in rows for key in self._covered(windows, b)}
        return rows, {k: v for k, v in found.items() if k in needed}

    # -- decoding ------------------------------------------------------------------------------------
    def _run_decoder(self, streams: list[EncodedTile]) -> list[torch.Tensor | None]:
        """Decoded (3, th, tw) tiles, one batched call; a call that fails is retried tile by tile and
        a tile that still fails (or decodes to another size) comes back as None."""
        assert self._decode is not None
        data = [torch.frombuffer(bytearray(s.data), dtype=torch.uint8) for s in streams]
        try:
            out: list[torch.Tensor | None] = list(self._decode(data, self.device))
        except Exception:  # one bad stream fails the call: find it, tile by tile
            out = []
            for one in data:
                try:
                    out.append(self._decode([one], self.device)[0])
                except Exception:  # this tile goes through the CPU path, which reports it
                    out.append(None)
        shape = (3, *self._tile)
        return [t if t is not None and tuple(t.shape) == shape else None for t in out]

    def _decode_tiles(
        self, streams: dict[tuple[int, int], EncodedTile]
    ) -> dict[tuple[int, int], torch.Tensor]:
        keys = list(streams)
        tiles = self._run_decoder([streams[k] for k in keys])
        with self._lock:
            self.stats.decode_calls += 1
            self.stats.file_tiles_decoded += len(keys)
        return {k: t for k, t in zip(keys, tiles) if t is not None}

    def _check_level(self, streams: dict[tuple[int, int], EncodedTile]) -> bool:
        """Whether the device decoder gives the CPU decoder's pixels (within ``tolerance``) on up to
        :data:`CHECK_TILES` of ``streams``; decided once per reader, under a lock."""
        with self._lock:
            if self._jpeg is not None:
                return self._jpeg
            level, (th, tw) = self.grid.read_level, self._tile
            keys = list(streams)[:CHECK_TILES]
            tiles = self._run_decoder([streams[k] for k in keys])
            self.stats.check_calls += 1
            worst, compared = 0, 0
            for (r, c), tile in zip(keys, tiles):
                try:
                    ref = self.slide.read_level_window(
                        level, c * tw, r * th, (c + 1) * tw, (r + 1) * th, strict=True
                    )
                except UnreadableRegionError:
                    continue
                if tile is None:
                    worst = max(worst, 256)
                    continue
                h, w = min(th, self._shape[0] - r * th), min(tw, self._shape[1] - c * tw)
                mine = tile[:, :h, :w].permute(1, 2, 0).cpu().numpy().astype(np.int16)
                worst = max(worst, int(np.abs(mine - ref[:h, :w]).max()))
                compared += 1
            if compared == 0 and worst == 0:
                return False  # nothing to judge by yet: this batch goes through the CPU
            self._jpeg = worst <= self.tolerance
            self.stats.level_check[level] = worst
            return self._jpeg

    # -- assembling ----------------------------------------------------------------------------------
    def _assemble(self, windows: Windows, decoded: dict[tuple[int, int], torch.Tensor]) -> torch.Tensor:
        """(n, W, H, 3) uint8 windows, column-major, gathered from the decoded file tiles (fill outside
        the level), each in the top-left of its slot; W, H the largest window's."""
        (th, tw), (height, width) = self._tile, self._shape
        dev = self.device
        keys = list(decoded)
        fill = len(keys)
        pixels = torch.cat(
            [
                torch.stack([decoded[k] for k in keys]).permute(0, 2, 3, 1),
                torch.full((1, th, tw, 3), FILL, dtype=torch.uint8, device=dev),
            ]
        ).reshape(-1, 3)
        slot_of = {k: i for i, k in enumerate(keys)}
        r0, c0 = windows.ya // th, windows.xa // tw
        n_r = int(((windows.yb - 1) // th - r0).max()) + 1
        n_c = int(((windows.xb - 1) // tw - c0).max()) + 1
        table = np.full((len(r0), n_r, n_c), fill, np.int64)
        for b in range(len(r0)):
            for r, c in self._covered(windows, b):
                table[b, r - r0[b], c - c0[b]] = slot_of[(r, c)]
        hmax, wmax = int((windows.yb - windows.ya).max()), int((windows.xb - windows.xa).max())
        y = torch.from_numpy(windows.ya).to(dev)[:, None] + torch.arange(hmax, device=dev)
        x = torch.from_numpy(windows.xa).to(dev)[:, None] + torch.arange(wmax, device=dev)
        ry = (torch.div(y, th, rounding_mode="floor") - torch.from_numpy(r0).to(dev)[:, None]).clamp_(
            0, n_r - 1
        )
        cx = (torch.div(x, tw, rounding_mode="floor") - torch.from_numpy(c0).to(dev)[:, None]).clamp_(
            0, n_c - 1
        )
        batch = torch.arange(len(r0), device=dev)[:, None, None]
        slot = torch.from_numpy(table).to(dev)[batch, ry[:, None, :], cx[:, :, None]]
        outside = ((y < 0) | (y >= height))[:, None, :] | ((x < 0) | (x >= width))[:, :, None]
        slot = slot.masked_fill_(outside, fill)
        flat = slot * (th * tw) + (y.remainder(th) * tw)[:, None, :] + x.remainder(tw)[:, :, None]
        return pixels.index_select(0, flat.reshape(-1)).view(*flat.shape, 3)

    # -- streams -------------------------------------------------------------------------------------
    @contextmanager
    def _stream(self) -> Iterator[Any]:
        """Work on this reader thread's own CUDA stream and give an event to record when done; on
        other devices nothing (None)."""
        if self.device.type != "cuda":
            yield None
            return
        stream = getattr(self._local, "stream", None)
        if stream is None:
            stream = self._local.stream = torch.cuda.Stream(self.device)
        with torch.cuda.stream(stream):
            yield torch.cuda.Event()


def _subset(windows: Windows, rows: list[int]) -> Windows:
    """The windows at positions ``rows``."""
    return Windows(
        windows.xa[rows],
        windows.ya[rows],
        windows.xb[rows],
        windows.yb[rows],
        windows.box[rows],
        windows.bilinear,
        windows.identity[rows],
    )
