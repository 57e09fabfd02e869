"""Robustness diagnostics: how much embeddings and predictions depend on the scanner (no Qt)."""

from __future__ import annotations

from .cohort import (
    CohortDiagnostics,
    diagnose_cohort,
    diagnose_cohort_csv,
    projection_figure,
    write_diagnostics,
)
from .knn import NeighbourCounts, choose_k, nearest_neighbours, neighbour_counts, robustness_index
from .layers import whatif_layers
from .whatif import WhatIfResult, estimate_cohort_profiles, load_profiles, save_profiles, scanner_whatif

__all__ = [
    "CohortDiagnostics",
    "NeighbourCounts",
    "WhatIfResult",
    "choose_k",
    "diagnose_cohort",
    "diagnose_cohort_csv",
    "estimate_cohort_profiles",
    "load_profiles",
    "nearest_neighbours",
    "neighbour_counts",
    "projection_figure",
    "robustness_index",
    "save_profiles",
    "scanner_whatif",
    "whatif_layers",
    "write_diagnostics",
]
