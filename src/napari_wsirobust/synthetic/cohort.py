"""The synthetic multi-scanner cohort: patients, scanners, labels, splits and a cohort CSV.

Design (defaults): three scanner profiles A, B, C; every patient has one tissue (normal or tumour)
scanned on a *home* scanner. Splits are by patient:

- ``train``, ``val``, ``test_id``: *confounded* - ``confound`` (90 %) of tumour patients are scanned
  on scanner A and the same fraction of normal patients on the other scanners, so scanner predicts
  the label as well as the tissue does;
- ``test_ood``: scanner and label independent (every label x scanner cell equally filled), and each
  of these patients is also re-scanned on every other profile (``swapped = 1``): same tissue, other
  scanner, the test bed for scanner-swap robustness. With ``test_scanners`` (profiles no training
  split uses, e.g. :data:`~napari_wsirobust.synthetic.profiles.UNSEEN_PROFILES`), each test_ood
  patient is also scanned on every one of them: the test bed for scanners never seen in training.

With ``rescanned_train_patients`` = k > 0, the first k training patients of each label are also
re-scanned on every other profile (same tissue, same split): paired scans of the kind multi-scanner
studies (PLISM, SCORPION) provide, which the paired-scan consistency loss learns from. The confound of
the *home* scans is unchanged; the re-scans add k x (scanners - 1) slides per label.

With ``reference_patients`` = r > 0, r further patients per label are scanned on *every* profile and
put in split ``reference`` with a blank label: an unlabelled multi-scanner reference set (PLISM-like)
that only the paired-scan consistency loss reads. The labelled splits are unchanged (same tissues,
same files), so a plain head sees exactly the default cohort's training data.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError, WsiRobustError
from ..progress import FINISHED, RENDER, ProgressCallback, report
from .profiles import get_profile
from .slide import SyntheticSlideSpec, ground_truth_path_for, write_synthetic_slide
from .tissue import TissueSpec


class CohortExistsError(WsiRobustError, FileExistsError):
    """The output folder holds a cohort generated with other settings."""


COHORT_CSV = "cohort.csv"
COHORT_JSON = "cohort.json"
CSV_COLUMNS = [
    "slide_id",
    "path",
    "label",
    "scanner",
    "patient",
    "split",
    "swapped",
    "home_scanner",
    "tissue_seed",
    "ground_truth",
]
LABELS = ("normal", "tumour")
REFERENCE_SPLIT = "reference"  # the cohort table's unlabelled re-scan split (cohort.REFERENCE)


@dataclass(frozen=True)
class CohortConfig:
    """Size and design of the synthetic cohort; the defaults generate in well under a minute."""

    seed: int = 2026
    scanners: tuple[str, ...] = ("A", "B", "C")
    confounded_scanner: str = "A"
    confound: float = 0.9
    patients_train: int = 32
    patients_val: int = 8
    patients_test_id: int = 12
    ood_patients_per_cell: int = 2
    swap_ood: bool = True
    rescanned_train_patients: int = 0  # per label: training patients also scanned on every other profile
    reference_patients: int = 0  # per label: unlabelled patients scanned on every profile (split reference)
    test_scanners: tuple[str, ...] = ()  # unseen profiles: every test_ood patient also scanned on each
    width: int = 2048
    height: int = 1536
    mpp: float = 0.5
    # Difficulty, tuned so the confound matters (see BENCHMARKS.md, shortcut benchmark): with fully
    # atypical tumours (atypia 1) covering 20-40 % of the tissue, even the plain head scored AUC 1.0 on
    # the shifted test, i.e. the tissue signal was too easy to need a shortcut.
    atypia: float = 0.5  # how different tumour nuclei look (see TissueSpec)
    tumour_fraction_range: tuple[float, float] = (0.1, 0.3)  # of the tissue, per tumour slide
    workers: int = field(default=0, compare=False)  # 0: one per CPU core

    def __post_init__(self) -> None:
        for s in (*self.scanners, *self.test_scanners):
            get_profile(s)
        if set(self.test_scanners) & set(self.scanners):
            raise InputError("test_scanners must be profiles the cohort's training scanners are not")
        if self.confounded_scanner not in self.scanners:
            raise InputError("confounded_scanner must be one of the cohort's scanners")
        if len(self.scanners) < 2:
            raise InputError("a multi-scanner cohort needs at least two scanners")
        if not 0.5 <= self.confound <= 1.0:
            raise InputError("confound must be within 0.5..1.0")
        if not 0 <= self.rescanned_train_patients <= self.patients_train // 2:
            raise InputError(
                f"rescanned_train_patients must be within 0..{self.patients_train // 2} "
                "(per label, at most the training patients of that label)"
            )
        if not 0 <= self.reference_patients <= 50:
            raise InputError("reference_patients must be within 0..50 (per label)")

    def identity(self) -> str:
        """Hash of everything that changes the generated pixels (not the worker count)."""
        data = asdict(self)
        data.pop("workers")
        for option in ("rescanned_train_patients", "reference_patients", "test_scanners"):
            if not data[option]:
                data.pop(option)  # cohorts made before the option keep their identity
        data["profiles"] = [get_profile(s).to_dict() for s in (*self.scanners, *self.test_scanners)]
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CohortSlide:
    """One row of the cohort table."""

    slide_id: str
    label: str
    scanner: str
    patient: str
    split: str
    swapped: bool
    home_scanner: str
    tissue: TissueSpec

    @property
    def filename(self) -> str:
        return f"{self.slide_id}.tiff"


def _confounded_scanners(n: int, label: str, cfg: CohortConfig, rng: np.random.Generator) -> list[str]:
    """Scanners for ``n`` patients of ``label`` in a confounded split."""
    others = [s for s in cfg.scanners if s != cfg.confounded_scanner]
    n_major = int(round(cfg.confound * n))
    if label == "tumour":
        chosen = [cfg.confounded_scanner] * n_major
        chosen += [others[i % len(others)] for i in range(n - n_major)]
    else:
        chosen = [others[i % len(others)] for i in range(n_major)]
        chosen += [cfg.confounded_scanner] * (n - n_major)
    rng.shuffle(chosen)
    return chosen


def plan_cohort(cfg: CohortConfig) -> list[CohortSlide]:
    """Every slide of the cohort, deterministically from ``cfg.seed``."""
    rng = np.random.default_rng([cfg.seed, 7])
    slides: list[CohortSlide] = []
    patient_index = 0

    def new_tissue(tumour: bool) -> TissueSpec:
        nonlocal patient_index
        patient_index += 1
        return TissueSpec(
            seed=cfg.seed * 10_000 + patient_index,
            tumour=tumour,
            width=cfg.width,
            height=cfg.height,
            mpp=cfg.mpp,
            tissue_coverage=float(rng.uniform(0.45, 0.65)),
            tumour_fraction=float(rng.uniform(*cfg.tumour_fraction_range)),
            atypia=cfg.atypia,
        )

    def add(label: str, scanner: str, split: str, swap_to: tuple[str, ...] = ()) -> None:
        tissue = new_tissue(label == "tumour")
        patient = f"P{patient_index:03d}"
        for s in (scanner, *swap_to):
            slides.append(
                CohortSlide(
                    slide_id=f"{patient}_{s}",
                    label=label,
                    scanner=s,
                    patient=patient,
                    split=split,
                    swapped=s != scanner,
                    home_scanner=scanner,
                    tissue=tissue,
                )
            )

    for split, n in (
        ("train", cfg.patients_train),
        ("val", cfg.patients_val),
        ("test_id", cfg.patients_test_id),
    ):
        n_tumour = n // 2
        for label, count in (("tumour", n_tumour), ("normal", n - n_tumour)):
            for i, scanner in enumerate(_confounded_scanners(count, label, cfg, rng)):
                rescan = split == "train" and i < cfg.rescanned_train_patients
                add(label, scanner, split, tuple(s for s in cfg.scanners if s != scanner) if rescan else ())
    for label in LABELS:
        for scanner in cfg.scanners:
            for _ in range(cfg.ood_patients_per_cell):
                swaps = tuple(s for s in cfg.scanners if s != scanner) if cfg.swap_ood else ()
                add(label, scanner, "test_ood", swaps + cfg.test_scanners)
    for label in LABELS:  # last, so every other slide keeps its tissue
        for _ in range(cfg.reference_patients):
            add(label, cfg.scanners[0], REFERENCE_SPLIT, cfg.scanners[1:])
    return slides


def _render_one(args: tuple[CohortSlide, str]) -> str:
    """Write one slide unless present; what was done ("written" or "present")."""
    slide, out_dir = args
    path = Path(out_dir) / "slides" / slide.filename
    if path.exists() and ground_truth_path_for(path).exists():
        return "present"
    write_synthetic_slide(SyntheticSlideSpec.make(slide.tissue, slide.scanner), path)
    return "written"


def _render_all(jobs: list[tuple[CohortSlide, str]], workers: int, progress: ProgressCallback | None) -> None:
    """Render ``jobs`` (in ``workers`` processes when more than one), reporting each finished slide."""
    report(progress, "", FINISHED, 0, len(jobs))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(_render_one, job): job[0] for job in jobs}
            for i, future in enumerate(as_completed(futures), 1):
                report(progress, futures[future].filename, FINISHED, i, len(jobs), message=future.result())
        return
    for i, job in enumerate(jobs, 1):
        report(progress, job[0].filename, RENDER, message="rendering the synthetic slide")
        report(progress, job[0].filename, FINISHED, i, len(jobs), message=_render_one(job))


def cohort_is_complete(out_dir: str | os.PathLike[str], cfg: CohortConfig) -> bool:
    """True when ``out_dir`` holds a finished cohort generated with this configuration."""
    out = Path(out_dir)
    try:
        meta = json.loads((out / COHORT_JSON).read_text())
    except (OSError, ValueError):
        return False
    if meta.get("identity") != cfg.identity():
        return False
    rows = read_cohort_csv(out / COHORT_CSV)
    return all(Path(r["path"]).exists() and Path(r["ground_truth"]).exists() for r in rows)


def generate_cohort(
    out_dir: str | os.PathLike[str],
    cfg: CohortConfig | None = None,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """Generate (or complete) the cohort in ``out_dir`` and return the cohort CSV path.

    Slides already present are kept (a half-written slide never has its final name), so an
    interrupted run resumes. A cohort generated with another configuration is refused unless
    ``force``, which regenerates every slide. ``progress`` gets the run's ``finished`` count per
    slide ("written" or "present"), and a ``render`` record as each slide starts when they are
    written in this process (one worker).
    """
    cfg = cfg or CohortConfig()
    out = Path(out_dir)
    meta_path = out / COHORT_JSON
    if meta_path.exists():
        try:
            old = json.loads(meta_path.read_text()).get("identity")
        except ValueError:
            old = None
        if old != cfg.identity():
            if not force:
                raise CohortExistsError(
                    f"{out} holds a cohort generated with other settings; "
                    "choose another folder or pass force=True (--force) to regenerate it"
                )
            for p in (out / "slides").glob("*"):
                p.unlink()
    (out / "slides").mkdir(parents=True, exist_ok=True)
    plan = plan_cohort(cfg)
    workers = cfg.workers or os.cpu_count() or 1
    _render_all([(s, str(out)) for s in plan], workers, progress)
    _write_csv(out / COHORT_CSV, plan)
    meta = {
        "identity": cfg.identity(),
        "config": {k: v for k, v in asdict(cfg).items() if k != "workers"},
        "profiles": {s: get_profile(s).to_dict() for s in (*cfg.scanners, *cfg.test_scanners)},
        "n_slides": len(plan),
        "n_patients": len({s.patient for s in plan}),
    }
    tmp = meta_path.with_name(COHORT_JSON + ".partial")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, meta_path)
    return out / COHORT_CSV


def _write_csv(path: Path, plan: list[CohortSlide]) -> None:
    tmp = path.with_name(path.name + ".partial")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for s in plan:
            writer.writerow(
                {
                    "slide_id": s.slide_id,
                    "path": f"slides/{s.filename}",
                    "label": "" if s.split == REFERENCE_SPLIT else s.label,  # unlabelled reference
                    "scanner": s.scanner,
                    "patient": s.patient,
                    "split": s.split,
                    "swapped": int(s.swapped),
                    "home_scanner": s.home_scanner,
                    "tissue_seed": s.tissue.seed,
                    "ground_truth": f"slides/{s.filename}.gt.npz",
                }
            )
    os.replace(tmp, path)


def read_cohort_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Rows of a cohort CSV with ``path`` and ``ground_truth`` resolved against the CSV's folder.

    Required columns: slide path (``path``), ``label``, ``scanner``, ``patient``, ``split``.
    """
    path = Path(path)
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"path", "label", "scanner", "patient", "split"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: cohort CSV lacks column(s) {sorted(missing)}")
        rows = list(reader)
    for row in rows:
        for key in ("path", "ground_truth"):
            value = row.get(key)
            if value and not Path(value).is_absolute():
                row[key] = str((path.parent / value).resolve())
    return rows
