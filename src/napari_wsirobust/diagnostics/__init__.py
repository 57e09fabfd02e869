"""Robustness diagnostics: how much embeddings and predictions depend on the scanner (no Qt)."""

from __future__ import annotations

from .cohort import (
    CohortDiagnostics,
    diagnose_cohort,
    diagnose_cohort_csv,
    projection_figure,
    write_diagnostics,
)
from .croma_metrics import RobustnessMetrics, robustness_metrics
from .knn import NeighbourCounts, choose_k, nearest_neighbours, neighbour_counts, robustness_index
from .layers import whatif_layers
from .summary import format_number, headline, metric_rows, robustness_rows, summary_rows
from .whatif import WhatIfResult, estimate_cohort_profiles, load_profiles, save_profiles, scanner_whatif

__all__ = [
    "CohortDiagnostics",
    "NeighbourCounts",
    "RobustnessMetrics",
    "WhatIfResult",
    "choose_k",
    "diagnose_cohort",
    "diagnose_cohort_csv",
    "estimate_cohort_profiles",
    "format_number",
    "headline",
    "load_profiles",
    "metric_rows",
    "nearest_neighbours",
    "neighbour_counts",
    "projection_figure",
    "robustness_index",
    "robustness_metrics",
    "robustness_rows",
    "save_profiles",
    "scanner_whatif",
    "summary_rows",
    "whatif_layers",
    "write_diagnostics",
]
