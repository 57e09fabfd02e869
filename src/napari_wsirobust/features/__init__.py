"""Tile embedding pipeline, on-disk feature cache, cohort extraction and CLAM/TRIDENT HDF5
interchange (no Qt).
"""

from __future__ import annotations

from .cache import FeatureCache, cache_key, default_cache_dir
from .cohort import (
    ExtractConfig,
    encoder_for,
    extract_cohort,
    slide_features,
    slides_from_inputs,
    slides_with_mpp,
)
from .device_tiles import DeviceBatch, DeviceReadStats, DeviceTileReader, default_readers
from .h5 import FeatureFileError, FeatureSet, read_feature_h5, write_feature_h5
from .pipeline import (
    EmbedProgress,
    embed_batch,
    embed_tiles,
    encode_normalised,
    run_to_completion,
    select_device,
)
from .slide_prep import PLAN_MESSAGES, TISSUE_MESSAGES, PrepState, SlidePrepStore, forget_in_memory
from .unreadable import (
    DEFAULT_MAX_UNREADABLE_SHARE,
    ExcludedTiles,
    TooManyUnreadableTilesError,
    check_unreadable_share,
    split_unreadable,
)

__all__ = [
    "PLAN_MESSAGES",
    "TISSUE_MESSAGES",
    "DEFAULT_MAX_UNREADABLE_SHARE",
    "DeviceBatch",
    "DeviceReadStats",
    "DeviceTileReader",
    "EmbedProgress",
    "ExcludedTiles",
    "ExtractConfig",
    "FeatureCache",
    "FeatureFileError",
    "FeatureSet",
    "PrepState",
    "SlidePrepStore",
    "TooManyUnreadableTilesError",
    "cache_key",
    "check_unreadable_share",
    "default_cache_dir",
    "default_readers",
    "embed_batch",
    "embed_tiles",
    "encode_normalised",
    "encoder_for",
    "extract_cohort",
    "forget_in_memory",
    "read_feature_h5",
    "run_to_completion",
    "select_device",
    "slide_features",
    "slides_from_inputs",
    "slides_with_mpp",
    "split_unreadable",
    "write_feature_h5",
]
