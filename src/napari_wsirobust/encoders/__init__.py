"""Tile encoders: a registry of pathology foundation models and an offline default (no Qt)."""

from __future__ import annotations

from .model import TileEncoder, create_encoder, import_backends
from .registry import EncoderSpec, get_encoder_spec, list_encoders, register_encoder
from .weights import EncoderWeightsError

__all__ = [
    "EncoderSpec",
    "EncoderWeightsError",
    "TileEncoder",
    "create_encoder",
    "get_encoder_spec",
    "import_backends",
    "list_encoders",
    "register_encoder",
]
