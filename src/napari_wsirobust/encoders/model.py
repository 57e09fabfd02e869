"""Build an encoder from the registry and turn normalised tiles into embeddings."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from .registry import POOL_CLS, POOL_CLS_MEAN, POOL_GLOBAL, EncoderSpec, get_encoder_spec
from .weights import (
    EncoderWeightsError,
    check_state_fits,
    file_identity,
    header_shapes,
    load_state_dict_file,
    map_effnet_lite0_state,
    missing_weights_message,
    resolve_weights_file,
)

TIMM_PREFIX = "timm:"


def _resolve_layer_names(kwargs: dict[str, Any]) -> dict[str, Any]:
    import_backends()
    import timm.layers

    names = {
        "SwiGLUPacked": timm.layers.SwiGLUPacked,
        "Mlp": timm.layers.Mlp,
        "SiLU": nn.SiLU,
        "GELU": nn.GELU,
    }
    return {k: names.get(v, v) if isinstance(v, str) else v for k, v in kwargs.items()}


@dataclass(frozen=True)
class EncoderInfo:
    """What produced an embedding: used for cache keys and checkpoint validation."""

    name: str
    embed_dim: int
    weights_id: str  # "random-init", "hub:<id>" or a file identity
    input_size: int
    target_mpp: float


class TileEncoder(nn.Module):
    """A timm backbone plus the spec's pooling: ``forward(x: (B, 3, S, S) normalised) -> (B, D)``."""

    def __init__(self, spec: EncoderSpec, backbone: nn.Module, weights_id: str) -> None:
        super().__init__()
        self.spec = spec
        self.backbone = backbone
        self.info = EncoderInfo(spec.name, spec.embed_dim, weights_id, spec.input_size, spec.target_mpp)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    def normalise(self, tiles_uint8: torch.Tensor) -> torch.Tensor:
        """(B, S, S, 3) uint8 tiles -> (B, 3, S, S) float normalised with the spec's mean/std."""
        x = tiles_uint8.permute(0, 3, 1, 2).float().div_(255.0)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooling = self.spec.pooling
        if pooling == POOL_GLOBAL:
            return self.backbone(x)
        tokens = self.backbone.forward_features(x)  # (B, T, D), final norm applied
        cls = tokens[:, 0]
        if pooling == POOL_CLS:
            return cls
        if pooling == POOL_CLS_MEAN:
            patches = tokens[:, self.spec.num_prefix_tokens :].mean(dim=1)
            return torch.cat([cls, patches], dim=-1)
        raise ValueError(f"unknown pooling {pooling!r}")


def _custom_timm_spec(name: str) -> EncoderSpec:
    import_backends()
    import timm

    model_name = name.removeprefix(TIMM_PREFIX)
    if model_name not in timm.list_models():
        raise InputError(f"timm does not know the model {model_name!r}")
    probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    cfg = probe.pretrained_cfg
    return EncoderSpec(
        name=name,
        description=f"timm {model_name} with user-provided weights; pooled features",
        timm_name=model_name,
        timm_kwargs={"num_classes": 0},
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        input_size=int(cfg.get("input_size", (3, 224, 224))[-1]),
        pooling=POOL_GLOBAL,
        num_prefix_tokens=0,
        embed_dim=int(probe.num_features),
    )


def _llvm_already_loaded() -> bool:
    try:
        return "libLLVM" in Path("/proc/self/maps").read_text()
    except OSError:  # not Linux
        return False


def import_backends() -> None:
    """Import timm (and through it torchvision and torch._dynamo) safely.

    torch._dynamo imports triton when it is installed, and triton loads its own LLVM. When Mesa's
    software OpenGL (llvmpipe, which loads libLLVM) is already running - napari under Xvfb or on a
    machine without a GPU driver - loading the second LLVM crashes the process (segmentation fault,
    measured with napari 0.9.2, torch 2.14.1, Mesa LLVM 15). In that case triton is marked as not
    importable first: torch then runs without it (it is only needed for ``torch.compile`` on GPUs,
    which this package does not use)."""
    if "triton" not in sys.modules and _llvm_already_loaded():
        sys.modules["triton"] = None  # type: ignore[assignment]
    import timm  # noqa: F401


def build_backbone(spec: EncoderSpec) -> nn.Module:
    """The spec's architecture with random weights (no download)."""
    import_backends()
    import timm

    return timm.create_model(spec.timm_name, pretrained=False, **_resolve_layer_names(spec.timm_kwargs))


def expected_state_shapes(spec: EncoderSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of the spec's backbone state dict, from a build on the meta device (no memory)."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in build_backbone(spec).state_dict().items()}


def _backbone_from_file(spec: EncoderSpec, path: Path) -> nn.Module:
    """The spec's backbone with the weights of a local file; a safetensors file's names and shapes are
    checked from its header before its tensors are read, a PyTorch file's once loaded."""
    what = f"{path.name} does not fit {spec.name} ({spec.timm_name})"
    expected = expected_state_shapes(spec)
    shapes = header_shapes(path)
    positional = spec.name == "effnet-lite0-imagenet"  # the package's names are mapped by position
    if shapes is not None and not (positional and "_conv_stem.weight" in shapes):
        check_state_fits(shapes, expected, what)
    state = load_state_dict_file(path)
    backbone = build_backbone(spec)
    if positional and "_conv_stem.weight" in state:
        state = map_effnet_lite0_state(state, backbone.state_dict())
    check_state_fits({k: tuple(v.shape) for k, v in state.items()}, expected, what)
    backbone.load_state_dict(state)
    return backbone


def create_encoder(
    name: str,
    weights: str | os.PathLike[str] | None = None,
    *,
    allow_hub: bool = False,
    random_init: bool = False,
    device: str | torch.device = "cpu",
    target_mpp: float | None = None,
) -> TileEncoder:
    """Build encoder ``name`` (a registry name or ``"timm:<model>"``) in eval mode on ``device``.

    Weights: ``weights`` file, else the spec's environment variable, else a shipped package, else
    the hub when ``allow_hub``; ``random_init=True`` skips weights (benchmarks, tests). A missing
    source raises :class:`EncoderWeightsError` naming the file and variable to provide.
    """
    spec = _custom_timm_spec(name) if name.startswith(TIMM_PREFIX) else get_encoder_spec(name)
    if target_mpp is not None:
        spec = replace(spec, target_mpp=float(target_mpp))
    if random_init:
        backbone, weights_id = build_backbone(spec), "random-init"
    else:
        path = resolve_weights_file(spec, weights)
        if path is not None:
            backbone, weights_id = _backbone_from_file(spec, path), f"file:{file_identity(path)}"
        elif allow_hub and spec.hub_id:
            backbone = _from_hub(spec)
            weights_id = f"hub:{spec.hub_id}"
        else:
            raise EncoderWeightsError(missing_weights_message(spec))
    encoder = TileEncoder(spec, backbone, weights_id).eval().to(device)
    if spec.is_cnn:
        encoder = encoder.to(memory_format=torch.channels_last)
    return encoder


def _from_hub(spec: EncoderSpec) -> nn.Module:
    import_backends()
    import timm

    kwargs = _resolve_layer_names({k: v for k, v in spec.timm_kwargs.items() if k != "img_size"})
    try:
        return timm.create_model(spec.hub_id, pretrained=True, **kwargs)
    except Exception as exc:  # offline, gated, or renamed on the hub
        raise EncoderWeightsError(f"{missing_weights_message(spec)} (hub download failed: {exc})") from exc
