"""Cohorts (no Qt): the cohort table and its CSV, the Train dock's table records, and drawn
annotations turned into tile labels.
"""

from __future__ import annotations

from .annotations import UNLABELLED, AnnotationError, LabelMask, Region, SlideAnnotations, parse_value_labels
from .records import TABLE_COLUMNS, record_for_slide, records_from_table, records_to_rows
from .table import (
    COHORT_COLUMNS,
    NO_RESCANS,
    REFERENCE,
    TRAIN,
    VAL,
    CohortError,
    CohortRow,
    CohortTable,
    assign_patient_splits,
    build_cohort_table,
    check_patient_splits,
    read_cohort_table,
    rescanned_patients,
    write_cohort_csv,
)

__all__ = [
    "AnnotationError",
    "COHORT_COLUMNS",
    "CohortError",
    "CohortRow",
    "CohortTable",
    "LabelMask",
    "NO_RESCANS",
    "REFERENCE",
    "Region",
    "SlideAnnotations",
    "TABLE_COLUMNS",
    "TRAIN",
    "UNLABELLED",
    "VAL",
    "assign_patient_splits",
    "build_cohort_table",
    "check_patient_splits",
    "parse_value_labels",
    "read_cohort_table",
    "record_for_slide",
    "records_from_table",
    "records_to_rows",
    "rescanned_patients",
    "write_cohort_csv",
]
