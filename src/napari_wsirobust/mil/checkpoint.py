"""MIL checkpoints are data: safetensors weights plus a JSON config, never pickle.

Layout of a model folder::

    MODEL_DIR/CURRENT                  name of the active version (replaced atomically)
    MODEL_DIR/v<time>-<id>/model.safetensors
    MODEL_DIR/v<time>-<id>/config.json

A save writes a complete new version folder, then atomically points ``CURRENT`` at it, then prunes
older versions: a process killed at any moment leaves either the previous or the new model, whole.
A folder that directly holds ``model.safetensors`` and ``config.json`` (e.g. a bundled model) loads
too. A folder is user input: it is checked whole (:mod:`.checkpoint_check`) before a head is built.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .. import __version__
from .checkpoint_check import (
    CONFIG_FILE,
    EXTRA_PREFIX,
    WEIGHTS_FILE,
    CheckpointError,
    check_values,
    check_weights,
    read_config,
    read_header,
)
from .model import GatedAttentionMIL

# 1: features of the slides as scanned; 2: adds ``harmonise`` (tiles re-rendered into a reference profile
# first). A harmonised model is written as 2 so that an older plugin refuses it instead of predicting
# from unharmonised tiles; other models stay 1.
FORMAT_VERSION = 2
PLAIN_FORMAT_VERSION = 1
POINTER_FILE = "CURRENT"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")


@dataclass
class HeadConfig:
    in_dim: int
    n_classes: int
    hidden_dim: int = 256
    attention_dim: int = 128
    dropout: float = 0.25
    instance_classifier: bool = True

    def build(self) -> GatedAttentionMIL:
        return GatedAttentionMIL(**asdict(self))


@dataclass
class CheckpointConfig:
    """Everything needed to use a trained head correctly."""

    head: HeadConfig
    encoder_name: str
    embed_dim: int
    label_names: list[str]
    encoder_weights_id: str = ""
    tiling: dict[str, Any] = field(default_factory=dict)
    losses: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    harmonise: dict[str, Any] = field(default_factory=dict)  # reference profile tiles are re-rendered into
    color: str = "as-scanned"  # the slides' colour as trained: as scanned, or sRGB from their ICC profile
    notice: str = ""  # a sentence shown next to every prediction the model makes (empty: none)
    created: str = ""  # ISO-8601 UTC time the model was trained (empty: not recorded)
    site_profiles: dict[str, dict[str, Any]] = field(default_factory=dict)  # site -> StainProfile.to_dict()
    cohort: dict[str, Any] = field(default_factory=dict)  # split -> slides, and per site / label counts
    calibration: dict[str, Any] = field(default_factory=dict)  # Calibration.to_dict(); empty: none
    package_version: str = __version__
    format_version: int = PLAIN_FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.harmonise:
            self.format_version = max(self.format_version, FORMAT_VERSION)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CheckpointConfig:
        data = dict(data)
        if data.get("format_version", 0) > FORMAT_VERSION:
            raise CheckpointError(
                f"checkpoint format {data['format_version']} is newer than this napari-wsirobust "
                f"understands ({FORMAT_VERSION}); update the plugin"
            )
        data["head"] = HeadConfig(**data["head"])
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})

    def check_features(self, encoder_name: str, embed_dim: int) -> None:
        """Refuse features from another encoder or of another dimension, saying which."""
        if embed_dim != self.embed_dim or encoder_name != self.encoder_name:
            raise CheckpointError(
                f"this model was trained on {self.encoder_name} features ({self.embed_dim}-d), but the "
                f"features given come from {encoder_name} ({embed_dim}-d); embed the slides with "
                f"{self.encoder_name} or choose a model trained on {encoder_name}"
            )


def save_checkpoint(
    model: GatedAttentionMIL,
    config: CheckpointConfig,
    model_dir: str | os.PathLike[str],
    extra_tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save atomically (see module docstring); returns the new version folder. ``extra_tensors``
    (e.g. per-site standardisation statistics) are stored beside the weights under
    ``extra.<name>``."""
    root = Path(model_dir)
    root.mkdir(parents=True, exist_ok=True)
    name = f"v{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = root / f".{name}.partial"
    staging.mkdir()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    for key, tensor in (extra_tensors or {}).items():  # not ``name``: that is the version's
        state[f"{EXTRA_PREFIX}{key}"] = tensor.detach().cpu().contiguous()
    save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "napari-wsirobust-mil"})
    (staging / CONFIG_FILE).write_text(config.to_json())
    final = root / name
    os.replace(staging, final)
    pointer_tmp = root / f".{POINTER_FILE}.{name}.tmp"
    pointer_tmp.write_text(name)
    os.replace(pointer_tmp, root / POINTER_FILE)  # the commit point
    for old in root.iterdir():
        if old.is_dir() and old.name != name and (old.name.startswith("v") or old.name.endswith(".partial")):
            shutil.rmtree(old, ignore_errors=True)
    return final


def _pointed_version(root: Path) -> Path:
    """The version folder ``CURRENT`` names: a folder directly inside ``root``."""
    try:
        name = (root / POINTER_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{root}: {POINTER_FILE} is unreadable ({exc}); re-save the model") from None
    if not name or Path(name).name != name or name in (".", "..") or not (root / name).is_dir():
        raise CheckpointError(
            f"{root}: {POINTER_FILE} names {name!r}, which is not a version folder inside it; "
            "re-save the model"
        )
    return root / name


def _active_folder(root: Path) -> Path:
    if not root.exists():
        raise CheckpointError(f"model folder not found: {root}")
    if root.is_file():
        if root.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(
                f"{root.name}: refusing to load a pickle-based file; napari-wsirobust models are a "
                "folder with model.safetensors and config.json"
            )
        raise CheckpointError(f"{root}: expected a model folder (model.safetensors + config.json)")
    folder = _pointed_version(root) if (root / POINTER_FILE).exists() else root
    if not (folder / WEIGHTS_FILE).exists():
        pickles = [p.name for p in folder.glob("*") if p.suffix.lower() in PICKLE_SUFFIXES]
        if pickles:
            raise CheckpointError(
                f"{root}: holds {', '.join(pickles)} but no {WEIGHTS_FILE}; refusing to unpickle - "
                "napari-wsirobust models are safetensors + JSON"
            )
        raise CheckpointError(f"{root}: no {WEIGHTS_FILE} found")
    return folder


def load_checkpoint(model_dir: str | os.PathLike[str]) -> tuple[GatedAttentionMIL, CheckpointConfig]:
    """The model (eval mode, CPU) and its config; raises :class:`CheckpointError` with the reason."""
    model, config, _ = load_checkpoint_with_extras(model_dir)
    return model, config


def load_checkpoint_config(model_dir: str | os.PathLike[str]) -> tuple[Path, CheckpointConfig]:
    """The active version folder and its config, checked as a load checks them (the safetensors
    header included) without reading the weights; raises :class:`CheckpointError` with the reason."""
    folder = _active_folder(Path(model_dir))
    config = CheckpointConfig.from_dict(read_config(folder))
    head = asdict(config.head)
    check_weights(folder, head, config.head.instance_classifier, config.embed_dim, read_header(folder))
    check_values(folder, asdict(config))
    return folder, config


def load_checkpoint_with_extras(
    model_dir: str | os.PathLike[str],
) -> tuple[GatedAttentionMIL, CheckpointConfig, dict[str, torch.Tensor]]:
    """Like :func:`load_checkpoint`, also returning the extra tensors saved with the weights.

    The config and the safetensors header are checked against each other first: a head is only
    built, and the weights only read, once they are known to fit."""
    folder, config = load_checkpoint_config(model_dir)
    model = config.head.build()
    try:
        state = load_file(str(folder / WEIGHTS_FILE), device="cpu")
        extras = {k[len(EXTRA_PREFIX) :]: v.float() for k, v in state.items() if k.startswith(EXTRA_PREFIX)}
        weights = {k: v for k, v in state.items() if not k.startswith(EXTRA_PREFIX)}
        model.load_state_dict(weights, strict=True)
    except Exception as exc:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: weights do not load ({exc})") from exc
    return model.eval(), config, extras
