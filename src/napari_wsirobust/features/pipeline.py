"""Batched tile embedding with tile reading overlapped with model compute.

:func:`embed_tiles` is a plain generator: it yields :class:`EmbedProgress` records after every batch
and returns the (N, D) embeddings, so a test simply iterates it and a GUI wraps it in a napari
``thread_worker`` whose ``quit()`` stops it at the next batch. Tiles are read, decoded and resized in
a thread pool at most ``prefetch`` batches ahead of the model, which bounds memory whatever the
slide size.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from ..encoders import TileEncoder
from ..errors import InputError
from ..io import WSI, UnreadableRegionError
from ..stain import TileTransform
from ..tiling import TileGrid, read_tile


@dataclass(frozen=True)
class EmbedProgress:
    """Progress of one embedding run: tiles done out of total, elapsed seconds, throughput."""

    done: int
    total: int
    elapsed_s: float

    @property
    def tiles_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def select_device(preference: str = "auto") -> torch.device:
    """``"auto"``: CUDA, then Apple MPS, then CPU; any other value is used as given."""
    if preference != "auto":
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("device 'cuda' requested but no CUDA GPU is available")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device) -> torch.autocast | nullcontext:
    """bf16 autocast on GPUs that support it, fp16 on other CUDA GPUs, none on CPU/MPS."""
    if device.type != "cuda":
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def _read_batch(
    slide: WSI, grid: TileGrid, indices: np.ndarray, transform: TileTransform | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(tiles, unreadable): a tile over a damaged file tile is left blank and flagged."""
    tiles, unreadable = [], np.zeros(len(indices), bool)
    for k, i in enumerate(indices):
        try:
            tile = read_tile(slide, grid, int(i), strict=True)
        except UnreadableRegionError:
            unreadable[k] = True
            tile = np.full((grid.config.tile_size, grid.config.tile_size, 3), 255, np.uint8)
        else:
            if transform is not None:
                tile = transform(tile, int(grid.rows[i]), int(grid.cols[i]))
        tiles.append(tile)
    return np.stack(tiles), unreadable


def embed_batch(encoder: TileEncoder, tiles: np.ndarray, device: torch.device) -> np.ndarray:
    """(B, S, S, 3) uint8 tiles -> (B, D) float32 embeddings."""
    x = torch.from_numpy(tiles).to(device, non_blocking=True)
    x = encoder.normalise(x)
    if encoder.spec.is_cnn:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_for(device):
        out = encoder(x)
    return out.float().cpu().numpy()


def embed_tiles(
    slide: WSI,
    grid: TileGrid,
    encoder: TileEncoder,
    *,
    batch_size: int = 32,
    readers: int = 2,
    prefetch: int = 2,
    device: torch.device | None = None,
    transform: TileTransform | None = None,
) -> Generator[EmbedProgress, None, np.ndarray]:
    """Embed every tile of ``grid``; yields progress per batch, returns (N, D) float32.

    ``transform(tile, row, col)`` (e.g. a scanner-swapped view) is applied to each tile after reading.
    A tile that overlaps a damaged file tile is not embedded: its row is NaN (see
    :func:`split_unreadable`).
    """
    if grid.config.tile_size != encoder.spec.input_size:
        raise InputError(
            f"tiles are {grid.config.tile_size} px but {encoder.spec.name} expects "
            f"{encoder.spec.input_size} px; tile with tile_size={encoder.spec.input_size}"
        )
    device = device or next(encoder.parameters()).device
    n = len(grid)
    out = np.zeros((n, encoder.spec.embed_dim), np.float32)
    start = time.perf_counter()
    if n == 0:
        return out
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    pending: deque[tuple[np.ndarray, Future[tuple[np.ndarray, np.ndarray]]]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, readers), thread_name_prefix="wsirobust-read")
    try:
        next_batch = 0
        done = 0
        while done < n:
            while next_batch < len(batches) and len(pending) < prefetch + 1:
                idx = batches[next_batch]
                pending.append((idx, pool.submit(_read_batch, slide, grid, idx, transform)))
                next_batch += 1
            idx, future = pending.popleft()
            tiles, unreadable = future.result()
            out[idx] = embed_batch(encoder, tiles, device)
            out[idx[unreadable]] = np.nan
            done += idx.size
            yield EmbedProgress(done, n, time.perf_counter() - start)
    finally:  # cancelled or failed: drop queued reads and release the threads
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    return out


def run_to_completion(gen: Generator[EmbedProgress, None, np.ndarray]) -> np.ndarray:
    """Drive an embedding generator without a GUI and return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
