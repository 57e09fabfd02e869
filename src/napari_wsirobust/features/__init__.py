"""Tile embedding pipeline, on-disk feature cache and CLAM/TRIDENT HDF5 interchange (no Qt)."""

from .cache import FeatureCache, cache_key
from .h5 import FeatureSet, read_feature_h5, write_feature_h5
from .pipeline import EmbedProgress, embed_tiles, select_device

__all__ = [
    "EmbedProgress",
    "FeatureCache",
    "FeatureSet",
    "cache_key",
    "embed_tiles",
    "read_feature_h5",
    "select_device",
    "write_feature_h5",
]
