"""Batched tile embedding with tile reading overlapped with model compute.

:func:`embed_tiles` is a plain generator: it yields :class:`EmbedProgress` records after every batch
and returns the (N, D) embeddings, so a test simply iterates it and a GUI wraps it in a napari
``thread_worker`` whose ``quit()`` stops it at the next batch. Tiles are read, decoded and resized in
a thread pool at most ``prefetch`` batches ahead of the model, which bounds memory whatever the
slide size. On a GPU the JPEG file tiles are decoded and resized there instead
(:mod:`.device_tiles`), and each batch's model call is queued before the previous batch's result is
collected, so the GPU never waits for the host.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, nullcontext
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..encoders import TileEncoder
from ..errors import InputError
from ..io import WSI
from ..stain import TileTransform
from ..tiling import TileGrid
from .device_tiles import DeviceBatch, DeviceReadStats, DeviceTileReader, default_readers, read_host_tiles

T = TypeVar("T")


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


def encode_normalised(model: nn.Module, x: torch.Tensor, device: torch.device, is_cnn: bool) -> torch.Tensor:
    """(B, 3, S, S) normalised tiles on ``device`` -> (B, D) embeddings there (not synchronised):
    channels-last for CNNs, inference mode, bf16/fp16 autocast on CUDA."""
    if is_cnn:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast_for(device):
        return model(x)


def embed_batch(
    encoder: TileEncoder, tiles: np.ndarray, device: torch.device, model: nn.Module | None = None
) -> np.ndarray:
    """(B, S, S, 3) uint8 tiles -> (B, D) float32 embeddings (through ``model``, e.g. the compiled
    encoder, when given)."""
    x = torch.from_numpy(tiles).to(device, non_blocking=True)
    x = encoder.normalise(x)
    return encode_normalised(model or encoder, x, device, encoder.spec.is_cnn).float().cpu().numpy()


def _pipelined(
    read: Callable[[np.ndarray], T], batches: list[np.ndarray], readers: int, prefetch: int
) -> Generator[tuple[np.ndarray, T], None, None]:
    """(indices, read(indices)) in order, read in ``readers`` threads at most ``prefetch`` batches
    ahead; closing the generator drops queued reads and releases the threads."""
    pending: deque[tuple[np.ndarray, Future[T]]] = deque()
    pool = ThreadPoolExecutor(max_workers=max(1, readers), thread_name_prefix="wsirobust-read")
    try:
        next_batch = 0
        for _ in batches:
            while next_batch < len(batches) and len(pending) < prefetch + 1:
                idx = batches[next_batch]
                pending.append((idx, pool.submit(read, idx)))
                next_batch += 1
            idx, future = pending.popleft()
            yield idx, future.result()
    finally:  # cancelled or failed
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _model_for(encoder: TileEncoder, compile_model: bool) -> nn.Module:
    """The encoder, or for a ViT with ``compile_model`` its ``torch.compile`` (compiled code is cached
    by torch per architecture and batch shape, so later calls reuse it)."""
    if not compile_model or encoder.spec.is_cnn:
        return encoder
    return torch.compile(encoder, dynamic=False)  # type: ignore[return-value]


def embed_tiles(
    slide: WSI,
    grid: TileGrid,
    encoder: TileEncoder,
    *,
    batch_size: int = 32,
    readers: int | None = None,
    prefetch: int | None = None,
    device: torch.device | None = None,
    transform: TileTransform | None = None,
    decode_on_device: bool | None = None,
    decode_tolerance: int = 1,
    compile_model: bool = False,
    device_stats: DeviceReadStats | None = None,
) -> Generator[EmbedProgress, None, np.ndarray]:
    """Embed every tile of ``grid``; yields progress per batch, returns (N, D) float32.

    ``transform(tile, row, col)`` (e.g. a scanner-swapped view) is applied to each tile after reading.
    A tile that overlaps a damaged file tile is not embedded: its row is NaN (see
    :func:`split_unreadable`). ``readers`` threads (default: the cores, capped) read up to
    ``prefetch`` batches (default: ``readers``) ahead of the model.

    ``decode_on_device`` (default: on for CUDA without ``transform``) decodes JPEG file tiles and
    resizes on the device (:class:`DeviceTileReader`, same pixels as the CPU path; tiles it cannot
    make fall back to the CPU, ``decode_tolerance`` is the decoder difference it accepts) and fills
    ``device_stats`` when given. ``compile_model`` runs ViT encoders through ``torch.compile``; off by
    default, as its speed-up has not been measured here.
    """
    if grid.config.tile_size != encoder.spec.input_size:
        raise InputError(
            f"tiles are {grid.config.tile_size} px but {encoder.spec.name} expects "
            f"{encoder.spec.input_size} px; tile with tile_size={encoder.spec.input_size}"
        )
    device = torch.device(device) if device is not None else next(encoder.parameters()).device
    n = len(grid)
    out = np.zeros((n, encoder.spec.embed_dim), np.float32)
    start = time.perf_counter()
    if n == 0:
        return out
    on_device = (
        decode_on_device if decode_on_device is not None else device.type == "cuda" and transform is None
    )
    readers = readers or default_readers()
    read: Callable[[np.ndarray], Any]
    if on_device:
        reader = DeviceTileReader(
            slide, grid, encoder, device, transform=transform, tolerance=decode_tolerance, stats=device_stats
        )
        read = reader.read
    else:
        read = partial(read_host_tiles, slide, grid, transform=transform)
    model = _model_for(encoder, compile_model)
    batches = [np.arange(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]
    done = 0

    def finish(idx: np.ndarray, unreadable: np.ndarray, y: np.ndarray | torch.Tensor) -> EmbedProgress:
        nonlocal done
        out[idx] = y if isinstance(y, np.ndarray) else y.float().cpu().numpy()
        out[idx[unreadable]] = np.nan
        done += idx.size
        return EmbedProgress(done, n, time.perf_counter() - start)

    with closing(_pipelined(read, batches, readers, prefetch or readers)) as reads:
        waiting: tuple[np.ndarray, np.ndarray, torch.Tensor] | None = None
        for idx, result in reads:
            if isinstance(result, DeviceBatch):  # launch this batch, then collect the one before
                y = encode_normalised(model, result.ready(), device, encoder.spec.is_cnn)
                if waiting is not None:
                    yield finish(*waiting)
                waiting = (idx, result.unreadable, y)
            else:
                tiles, unreadable = result
                y = (
                    embed_batch(encoder, tiles, device)
                    if model is encoder
                    else embed_batch(encoder, tiles, device, model)
                )
                yield finish(idx, unreadable, y)
        if waiting is not None:
            yield finish(*waiting)
    return out


def run_to_completion(gen: Generator[EmbedProgress, None, np.ndarray]) -> np.ndarray:
    """Drive an embedding generator without a GUI and return its result."""
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value
