"""A model folder is user input: ``config.json`` and the *header* of ``model.safetensors`` are checked
against each other before a head is built or a tensor read, so a config that disagrees with the
weights (say ``hidden_dim`` set to 10**9) is refused instead of allocating terabytes.

Order: config.json is a JSON object whose values have their types (:func:`read_config`); the
safetensors header is whole (:func:`read_header`); every tensor the config implies is there with its
shape, and nothing else (:func:`check_weights`); the values are in range and agree with each other,
and the tiling and harmonisation that prediction reads build (:func:`check_values`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..encoders import SafetensorsHeaderError, TensorEntry, read_safetensors_header
from ..errors import WsiRobustError
from ..io import COLOUR_MODES
from ..stain import Harmonisation
from ..tiling import TilingConfig
from .model import parameter_layout

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EXTRA_PREFIX = "extra."
POOLED_MEAN = f"{EXTRA_PREFIX}site_norm.pooled.mean"
MAX_DIM = 1_000_000
MAX_CONFIG_BYTES = 10_000_000
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")
INCONSISTENT = "the folder is inconsistent - re-save or re-train the model"
DAMAGED = "the file is damaged - re-save or re-train the model"
# The JSON type of every HeadConfig field (a test keeps the two in step) and of the rest of the config.
HEAD_TYPES: dict[str, tuple[type, ...]] = {
    "in_dim": (int,),
    "n_classes": (int,),
    "hidden_dim": (int,),
    "attention_dim": (int,),
    "dropout": (int, float),
    "instance_classifier": (bool,),
}
TOP_TYPES: dict[str, tuple[type, ...]] = {
    "head": (dict,),
    "encoder_name": (str,),
    "embed_dim": (int,),
    "label_names": (list,),
    "encoder_weights_id": (str,),
    "tiling": (dict,),
    "losses": (dict,),
    "metrics": (dict,),
    "training": (dict,),
    "harmonise": (dict,),
    "color": (str,),
    "notice": (str,),
    "created": (str,),
    "site_profiles": (dict,),
    "cohort": (dict,),
    "calibration": (dict,),
    "package_version": (str,),
    "format_version": (int,),
}
HEAD_REQUIRED = ("in_dim", "n_classes")
TOP_REQUIRED = ("head", "encoder_name", "embed_dim", "label_names")
_JSON_NAMES = {
    int: "an integer",
    float: "a number",
    bool: "true/false",
    str: "a string",
    list: "a list",
    dict: "an object",
}


class CheckpointError(WsiRobustError, ValueError):
    """A checkpoint is missing, unsafe, damaged or does not fit the features it is given."""


def read_config(folder: Path) -> dict[str, Any]:
    """config.json as an object whose every value the loader reads has its JSON type."""
    path = folder / CONFIG_FILE
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise CheckpointError(f"{folder}: {CONFIG_FILE} is over {MAX_CONFIG_BYTES} bytes; {DAMAGED}")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{folder}: {CONFIG_FILE} cannot be read as JSON ({exc}); {DAMAGED}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{folder}: {CONFIG_FILE} is not a JSON object; {DAMAGED}")
    _check_types(folder, data, TOP_TYPES, TOP_REQUIRED, "")
    unknown = sorted(set(data["head"]) - set(HEAD_TYPES))
    if unknown:
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} has an unknown head setting {unknown[0]!r}; {DAMAGED}"
        )
    _check_types(folder, data["head"], HEAD_TYPES, HEAD_REQUIRED, "head.")
    return data


def _check_types(
    folder: Path,
    data: Mapping[str, Any],
    types: Mapping[str, tuple[type, ...]],
    required: tuple[str, ...],
    prefix: str,
) -> None:
    for key in required:
        if key not in data:
            raise CheckpointError(f"{folder}: {CONFIG_FILE} lacks {prefix}{key}; {DAMAGED}")
    for key, allowed in types.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            kind = " or ".join(_JSON_NAMES[t] for t in allowed)
            raise CheckpointError(
                f"{folder}: {CONFIG_FILE} has {prefix}{key}={json.dumps(value)}, which is not {kind}; "
                f"{DAMAGED}"
            )


def read_header(folder: Path) -> dict[str, TensorEntry]:
    """The tensors model.safetensors holds (names, dtypes, shapes), from its header alone."""
    try:
        return read_safetensors_header(folder / WEIGHTS_FILE)
    except (SafetensorsHeaderError, OSError) as exc:
        raise CheckpointError(
            f"{folder}: {WEIGHTS_FILE} is not a complete safetensors file ({exc}); {DAMAGED}"
        ) from None


def check_weights(
    folder: Path,
    sizes: Mapping[str, Any],
    instance_classifier: bool,
    embed_dim: int,
    tensors: Mapping[str, TensorEntry],
) -> None:
    """Every tensor of a head with ``sizes`` (config.json's head) is in ``tensors`` with its shape and
    a float dtype, extras are per-site statistics of width ``embed_dim``, and nothing else is there."""
    layout = parameter_layout(instance_classifier)
    for name, axes in layout.items():
        if name not in tensors:
            raise CheckpointError(
                f"{folder}: {_config_says(name, instance_classifier)}{WEIGHTS_FILE} has no "
                f"tensor {name}; {INCONSISTENT}"
            )
        needed = tuple(a if isinstance(a, int) else sizes[a] for a in axes)
        if tensors[name].shape != needed:
            raise CheckpointError(
                f"{folder}: {_shape_disagreement(name, axes, needed, tensors[name].shape)}; {INCONSISTENT}"
            )
    for name, entry in tensors.items():
        if name.startswith(EXTRA_PREFIX):
            _check_extra(folder, name, entry, embed_dim, tensors)
        elif name not in layout:
            raise CheckpointError(
                f"{folder}: {_config_says(name, instance_classifier)}{WEIGHTS_FILE} holds {name}, which "
                f"this head does not have; {INCONSISTENT}"
            )
        if entry.dtype not in FLOAT_DTYPES:
            raise CheckpointError(
                f"{folder}: {WEIGHTS_FILE} stores {name} as {entry.dtype}, not floating point; {DAMAGED}"
            )


def _config_says(name: str, instance_classifier: bool) -> str:
    """The config setting that decides whether tensor ``name`` exists, as the start of a sentence."""
    if name.startswith("instance_classifier."):
        return f"config.json says instance_classifier={json.dumps(instance_classifier)} but "
    return ""


def _shape_disagreement(
    name: str, axes: tuple[str | int, ...], needed: tuple[int, ...], shape: tuple[int, ...]
) -> str:
    """Name the config value behind the first axis where ``shape`` disagrees with ``needed``."""
    has = f"{WEIGHTS_FILE} has {name} of shape {shape}"
    for axis, want, got in zip(axes, needed, shape):
        if want != got and isinstance(axis, str):
            return f"config.json says {axis}={want} but {has}"
    return f"{has} where the model needs {needed}"


def _check_extra(
    folder: Path, name: str, entry: TensorEntry, embed_dim: int, tensors: Mapping[str, TensorEntry]
) -> None:
    """Extras are per-site standardisation statistics: pooled and per-site mean/std pairs, each (D,)."""
    stem, _, stat = name.rpartition(".")
    site_norm = stem == f"{EXTRA_PREFIX}site_norm.pooled" or stem.startswith(f"{EXTRA_PREFIX}site_norm.site.")
    if not site_norm or stat not in ("mean", "std"):
        raise CheckpointError(f"{folder}: {WEIGHTS_FILE} holds an unknown tensor {name}; {INCONSISTENT}")
    partner = f"{stem}.{'std' if stat == 'mean' else 'mean'}"
    for needed in (partner, POOLED_MEAN):
        if needed not in tensors:
            raise CheckpointError(f"{folder}: {WEIGHTS_FILE} holds {name} but not {needed}; {INCONSISTENT}")
    if entry.shape != (embed_dim,):
        raise CheckpointError(
            f"{folder}: config.json says embed_dim={embed_dim} but {WEIGHTS_FILE} has {name} of shape "
            f"{entry.shape}; {INCONSISTENT}"
        )


def check_values(folder: Path, data: Mapping[str, Any]) -> None:
    """Sizes in range, embedding width and labels agreeing with the head, tiling and harmonisation
    usable: the rest of what loading and prediction read from the config (``data``, the typed dict)."""
    head = data["head"]
    for key in ("in_dim", "n_classes", "hidden_dim", "attention_dim"):
        low = 2 if key == "n_classes" else 1
        if not low <= head[key] <= MAX_DIM:
            raise CheckpointError(
                f"{folder}: {CONFIG_FILE} has {key}={head[key]}, outside {low}..{MAX_DIM}; {DAMAGED}"
            )
    if not (math.isfinite(head["dropout"]) and 0 <= head["dropout"] < 1):
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} has dropout={head['dropout']}, outside 0..1; {DAMAGED}"
        )
    if data["embed_dim"] != head["in_dim"]:
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} says embed_dim={data['embed_dim']} but in_dim={head['in_dim']}; "
            f"{INCONSISTENT}"
        )
    labels = data["label_names"]
    if not all(isinstance(n, str) and n for n in labels) or len(set(labels)) != len(labels):
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} has label_names {labels!r}, not distinct names; {DAMAGED}"
        )
    if len(labels) != head["n_classes"]:
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} says n_classes={head['n_classes']} but names {len(labels)} labels; "
            f"{INCONSISTENT}"
        )
    if not data["encoder_name"] or data["format_version"] < 1:
        raise CheckpointError(f"{folder}: {CONFIG_FILE} names no encoder or no format version; {DAMAGED}")
    _check_usable(folder, data)


def _check_usable(folder: Path, data: Mapping[str, Any]) -> None:
    """The colour mode is known; the tiling and harmonisation entries build, as prediction will
    build them."""
    if data.get("color", "as-scanned") not in COLOUR_MODES:
        raise CheckpointError(
            f"{folder}: {CONFIG_FILE} has colour {data['color']!r}; expected one of "
            f"{', '.join(COLOUR_MODES)}; {DAMAGED}"
        )
    builders: dict[str, Callable[[dict[str, Any]], object]] = {
        "tiling": lambda entry: TilingConfig(**entry),
        "harmonise": Harmonisation.from_dict,
    }
    for key, build in builders.items():
        if not data[key]:
            continue
        try:
            build(data[key])
        except (WsiRobustError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"{folder}: {CONFIG_FILE} has an unusable {key} entry ({exc}); {DAMAGED}"
            ) from None
