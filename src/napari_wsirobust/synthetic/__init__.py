"""Deterministic synthetic H&E slides where biology and scanner are independent knobs."""

from .cohort import CohortConfig, generate_cohort, read_cohort_csv
from .profiles import SCANNER_PROFILES, ScannerProfile, get_profile
from .slide import SyntheticSlideSpec, write_synthetic_slide
from .tissue import TissueSpec

__all__ = [
    "SCANNER_PROFILES",
    "CohortConfig",
    "ScannerProfile",
    "SyntheticSlideSpec",
    "TissueSpec",
    "generate_cohort",
    "get_profile",
    "read_cohort_csv",
    "write_synthetic_slide",
]
