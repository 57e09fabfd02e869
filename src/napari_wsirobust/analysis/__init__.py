"""Analysing a slide region with an encoder and a trained MIL head, and what comes out of it (no Qt).

:func:`analyse_region` is the one entry point the Analyse dock, the demo and scripts call;
:func:`analysis_layers` turns its result into napari layer data; ``write_*`` export GeoJSON/CSV files.
"""

from __future__ import annotations

from .export import write_geojson, write_slide_predictions_csv, write_tile_csv
from .maps import (
    METADATA_KEY,
    LayerData,
    analysis_layers,
    attention_colormap,
    drift_colormap,
    grid_image,
    layer_metadata,
    tile_rectangles_um,
)
from .prepare import BackgroundPreparation, PrepRequest, prepare_slide
from .progress import relay
from .region import (
    STAGES,
    AnalysisError,
    AnalysisProgress,
    AnalysisRequest,
    NoTissueError,
    RegionAnalysis,
    Resources,
    analyse_region,
    percentile_rank,
    slide_plan,
    slide_tissue,
    visible_rect_um,
)

__all__ = [
    "STAGES",
    "AnalysisError",
    "AnalysisProgress",
    "AnalysisRequest",
    "BackgroundPreparation",
    "LayerData",
    "METADATA_KEY",
    "NoTissueError",
    "PrepRequest",
    "RegionAnalysis",
    "Resources",
    "analyse_region",
    "analysis_layers",
    "attention_colormap",
    "drift_colormap",
    "grid_image",
    "layer_metadata",
    "percentile_rank",
    "prepare_slide",
    "relay",
    "slide_plan",
    "slide_tissue",
    "tile_rectangles_um",
    "visible_rect_um",
    "write_geojson",
    "write_slide_predictions_csv",
    "write_tile_csv",
]
