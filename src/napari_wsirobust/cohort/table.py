"""Cohort tables: which slides, their labels, sites, patients and splits, read from and written to CSV.

A cohort CSV needs ``path`` (relative paths are resolved against the CSV's folder) and ``label``;
``slide_id`` (default: file stem), ``scanner`` or ``site`` (default: one site), ``patient``
(default: one patient per slide) and ``split`` (train/val/test...; default: patient-level split
drawn with a seed, stratified by label) and ``mpp`` (the slide's pixel size in µm/px, replacing the
one in its file; blank: the file's) are optional. A patient never spans two splits: a table that
puts one patient in two splits is refused, because slides of the same patient in train and test
leak the patient's biology into the test score.

Split ``reference`` holds *reference re-scans*: tissue scanned on two or more scanners/sites (the same
``patient`` id on each scan), e.g. a multi-scanner calibration set in the manner of PLISM. Their labels
may be blank: they never enter the classification loss, validation or evaluation; only the
paired-scan consistency loss reads them, to learn what a change of scanner alone does.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import InputError, WsiRobustError
from ..tiling import parse_mpp

TRAIN, VAL, REFERENCE = "train", "val", "reference"


class CohortError(WsiRobustError, ValueError):
    """A cohort table is unusable (missing columns, leaking patients, unknown labels...)."""


@dataclass(frozen=True)
class CohortRow:
    slide_id: str
    path: str
    label: str
    site: str
    patient: str
    split: str
    ground_truth: str = ""
    mpp: float | None = None  # pixel size override (µm/px) the slide is read with; None: its file's
    extra: dict[str, str] = field(default_factory=dict, compare=False)


@dataclass
class CohortTable:
    rows: list[CohortRow]
    label_names: list[str]
    site_names: list[str]

    def __len__(self) -> int:
        return len(self.rows)

    def split(self, *names: str) -> list[CohortRow]:
        return [r for r in self.rows if r.split in names]

    def label_index(self, label: str) -> int:
        return self.label_names.index(label)


def assign_patient_splits(
    patients: list[str], labels: list[str], fractions: tuple[float, float] = (0.7, 0.15), seed: int = 0
) -> dict[str, str]:
    """Patient -> "train"/"val"/"test", drawn per label (a patient takes its first slide's label)."""
    first_label: dict[str, str] = {}
    for p, y in zip(patients, labels):
        first_label.setdefault(p, y)
    rng = np.random.default_rng(seed)
    out: dict[str, str] = {}
    for label in sorted(set(first_label.values())):
        group = sorted(p for p, y in first_label.items() if y == label)
        rng.shuffle(group)
        n_train = int(round(fractions[0] * len(group)))
        n_val = int(round(fractions[1] * len(group)))
        for i, p in enumerate(group):
            out[p] = TRAIN if i < n_train else VAL if i < n_train + n_val else "test"
    return out


NO_RESCANS = (
    "paired-scan consistency needs tissue scanned at two or more sites (the same patient id on slides of "
    "different scanners/sites, in the 'train' or the 'reference' split); this cohort has none - choose "
    "another loss configuration or add the re-scans"
)


def rescanned_patients(rows: list[CohortRow]) -> set[str]:
    """Patients with slides from two or more sites among ``rows`` (paired re-scans).

    The rows a paired-scan loss may learn from are ``table.split(TRAIN, REFERENCE)``."""
    sites: dict[str, set[str]] = {}
    for r in rows:
        sites.setdefault(r.patient, set()).add(r.site)
    return {p for p, s in sites.items() if len(s) >= 2}


def check_patient_splits(rows: list[CohortRow]) -> None:
    seen: dict[str, str] = {}
    for r in rows:
        if seen.setdefault(r.patient, r.split) != r.split:
            raise CohortError(
                f"patient {r.patient!r} appears in splits {seen[r.patient]!r} and {r.split!r}; a patient's "
                "slides must all be in one split (otherwise the test score leaks training patients)"
            )


def row_mpp(text: str | None, where: str) -> float | None:
    """A row's ``mpp`` cell: None when blank; a value that is not a pixel size is refused."""
    try:
        return parse_mpp(text, where)
    except InputError as exc:
        raise CohortError(str(exc)) from exc


def read_cohort_table(
    path: str | os.PathLike[str],
    label_names: list[str] | None = None,
    split_seed: int = 0,
    default_mpp: float | None = None,
) -> CohortTable:
    """Read and validate a cohort CSV (see module docstring). ``default_mpp``: the pixel size of
    the rows whose ``mpp`` is blank (e.g. a command's ``--mpp``; None: their files')."""
    path = Path(path)
    if not path.exists():
        raise CohortError(f"cohort table not found: {path}")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        columns = set(reader.fieldnames or [])
        records = list(reader)
    missing = {"path", "label"} - columns
    if missing:
        raise CohortError(
            f"{path.name}: missing column(s) {', '.join(sorted(missing))}; have {sorted(columns)}"
        )
    if not records:
        raise CohortError(f"{path.name}: no slides")
    site_col = "site" if "site" in columns else "scanner" if "scanner" in columns else None
    rows: list[CohortRow] = []
    for i, rec in enumerate(records, start=2):
        if not rec["path"]:
            raise CohortError(f"{path.name}, line {i}: empty path")
        p = Path(rec["path"])
        p = p if p.is_absolute() else (path.parent / p).resolve()
        slide_id = rec.get("slide_id") or p.stem
        gt = rec.get("ground_truth") or ""
        mpp = row_mpp(rec.get("mpp"), f"{path.name}, line {i}")
        if gt and not Path(gt).is_absolute():
            gt = str((path.parent / gt).resolve())
        rows.append(
            CohortRow(
                slide_id=slide_id,
                path=str(p),
                label=(rec["label"] or "").strip(),  # blank only in the reference split (checked below)
                site=(rec.get(site_col) or "unknown").strip() if site_col else "unknown",
                patient=(rec.get("patient") or slide_id).strip(),
                split=(rec.get("split") or "").strip(),
                ground_truth=gt,
                mpp=default_mpp if mpp is None else mpp,
                extra={
                    k: v
                    for k, v in rec.items()
                    if k not in {"path", "label", "slide_id", "patient", "split", "mpp"}
                },
            )
        )
    return build_cohort_table(rows, path.name, label_names, split_seed)


def build_cohort_table(
    rows: list[CohortRow], source: str = "cohort", label_names: list[str] | None = None, split_seed: int = 0
) -> CohortTable:
    """Validate rows (from a CSV or an edited table): fill blank splits by patient, refuse patients
    spanning splits, unknown labels and single-label cohorts. ``source`` names them in messages.

    Labels of ``reference`` rows may be blank and are neither checked nor counted among the labels."""
    if not rows:
        raise CohortError(f"{source}: no slides")
    if any(not r.label and r.split != REFERENCE for r in rows):
        missing = [r.slide_id for r in rows if not r.label and r.split != REFERENCE]
        raise CohortError(
            f"{source}: no label for {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    ids = [r.slide_id for r in rows]
    duplicated = sorted({i for i in ids if ids.count(i) > 1})
    if duplicated:
        raise CohortError(f"{source}: slide ids must be unique; repeated: {', '.join(duplicated)}")
    if any(not r.split for r in rows):
        if not all(not r.split for r in rows):
            raise CohortError(
                f"{source}: the split column is filled for some slides only (give every slide its split "
                f"when some are '{REFERENCE}' re-scans)"
            )
        splits = assign_patient_splits([r.patient for r in rows], [r.label for r in rows], seed=split_seed)
        rows = [replace(r, split=splits[r.patient]) for r in rows]
    check_patient_splits(rows)
    labelled = [r for r in rows if r.split != REFERENCE]
    if not labelled:
        raise CohortError(f"{source}: only '{REFERENCE}' slides; training needs labelled slides too")
    labels = label_names or sorted({r.label for r in labelled})
    unknown = sorted({r.label for r in labelled} - set(labels))
    if unknown:
        raise CohortError(f"{source}: labels {unknown} are not among the model's labels {labels}")
    if len(labels) < 2:
        raise CohortError(f"{source}: need at least two labels to train, found only {labels}")
    return CohortTable(rows, list(labels), sorted({r.site for r in rows}))


COHORT_COLUMNS = ("slide_id", "path", "label", "site", "patient", "split", "mpp")


def _cell(row: CohortRow, column: str) -> str:
    value = getattr(row, column)
    return "" if value is None else str(value)  # a float's str reads back as the same float


def write_cohort_csv(rows: list[CohortRow], path: str | os.PathLike[str]) -> Path:
    """Write rows as a cohort CSV that :func:`read_cohort_table` reads back (absolute paths; a blank
    ``mpp`` for slides read with their file's pixel size)."""
    from .._atomic import atomic_write_csv

    return atomic_write_csv(path, list(COHORT_COLUMNS), ([_cell(r, c) for c in COHORT_COLUMNS] for r in rows))
