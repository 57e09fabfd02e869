"""Tile encoders: a registry of pathology foundation models and an offline default (no Qt)."""

from __future__ import annotations

from .model import TileEncoder, create_encoder, import_backends
from .registry import EncoderSpec, get_encoder_spec, list_encoders, register_encoder
from .safetensors_header import SafetensorsHeaderError, TensorEntry, read_safetensors_header
from .weights import EncoderWeightsError

__all__ = [
    "EncoderSpec",
    "EncoderWeightsError",
    "SafetensorsHeaderError",
    "TensorEntry",
    "TileEncoder",
    "create_encoder",
    "get_encoder_spec",
    "import_backends",
    "list_encoders",
    "read_safetensors_header",
    "register_encoder",
]
