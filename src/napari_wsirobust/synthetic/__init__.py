"""Deterministic synthetic H&E slides where biology and scanner are independent knobs."""

from __future__ import annotations

from .cohort import CohortConfig, cohort_is_complete, generate_cohort, read_cohort_csv
from .profiles import EOSIN_OD, HEMATOXYLIN_OD, SCANNER_PROFILES, UNSEEN_PROFILES, ScannerProfile, get_profile
from .slide import (
    SyntheticSlideSpec,
    ground_truth_path_for,
    load_ground_truth,
    read_ground_truth_file,
    write_synthetic_slide,
)
from .tissue import TissueSpec

__all__ = [
    "CohortConfig",
    "EOSIN_OD",
    "HEMATOXYLIN_OD",
    "SCANNER_PROFILES",
    "UNSEEN_PROFILES",
    "ScannerProfile",
    "SyntheticSlideSpec",
    "TissueSpec",
    "cohort_is_complete",
    "generate_cohort",
    "get_profile",
    "ground_truth_path_for",
    "load_ground_truth",
    "read_cohort_csv",
    "read_ground_truth_file",
    "write_synthetic_slide",
]
