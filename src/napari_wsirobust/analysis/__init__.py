"""Analysing a slide region with an encoder and a trained MIL head, and what comes out of it (no Qt).

:func:`analyse_region` is the one entry point the Analyse widget, the demo and scripts call;
:mod:`.maps` turns its result into napari layer data; :mod:`.export` writes GeoJSON/CSV files.
"""

from .region import (
    AnalysisError,
    AnalysisProgress,
    AnalysisRequest,
    NoTissueError,
    RegionAnalysis,
    Resources,
    analyse_region,
    visible_rect_um,
)

__all__ = [
    "AnalysisError",
    "AnalysisProgress",
    "AnalysisRequest",
    "NoTissueError",
    "RegionAnalysis",
    "Resources",
    "analyse_region",
    "visible_rect_um",
]
