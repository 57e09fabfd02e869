"""Tile encoders: a registry of pathology foundation models and an offline default (no Qt)."""

from .model import TileEncoder, create_encoder
from .registry import EncoderSpec, get_encoder_spec, list_encoders, register_encoder
from .weights import EncoderWeightsError

__all__ = [
    "EncoderSpec",
    "EncoderWeightsError",
    "TileEncoder",
    "create_encoder",
    "get_encoder_spec",
    "list_encoders",
    "register_encoder",
]
