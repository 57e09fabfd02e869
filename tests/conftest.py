"""Shared fixtures: the public test slides in ../shared, small generated slides and cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_wsirobust.synthetic import (
    CohortConfig,
    SyntheticSlideSpec,
    TissueSpec,
    generate_cohort,
    write_synthetic_slide,
)

REPO = Path(__file__).resolve().parents[1]


def shared_slides_dir() -> Path:
    env = os.environ.get("WSIROBUST_SHARED_SLIDES")
    return Path(env) if env else REPO.parent / "shared" / "data" / "slides"


@pytest.fixture(scope="session")
def shared_slides() -> Path:
    folder = shared_slides_dir()
    if not folder.is_dir():
        pytest.skip(f"public test slides not found in {folder} (set WSIROBUST_SHARED_SLIDES)")
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sample data is generated into a temporary folder, never the user's cache."""
    os.environ["WSIROBUST_DATA_DIR"] = str(tmp_path_factory.mktemp("wsirobust-data"))
    os.environ["WSIROBUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("wsirobust-features"))


@pytest.fixture(scope="session")
def tumour_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated tumour slide (1024 x 768 at 0.5 µm/px, scanner A)."""
    path = tmp_path_factory.mktemp("slides") / "tumour_A.tiff"
    spec = SyntheticSlideSpec.make(TissueSpec(seed=5, tumour=True, width=1024, height=768), "A")
    write_synthetic_slide(spec, path)
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort (512 x 384 slides) with the default design; returns its CSV."""
    cfg = CohortConfig(width=512, height=384, workers=2)
    return generate_cohort(tmp_path_factory.mktemp("cohort"), cfg)


@pytest.fixture(scope="session")
def analysis_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048 x 1536 px at 0.5 µm/px, scanner B, 30 % tumour, obvious atypia; ground truth beside it."""
    path = tmp_path_factory.mktemp("analysis") / "tumour_B.tiff"
    tissue = TissueSpec(seed=21, tumour=True, width=2048, height=1536, tumour_fraction=0.3, atypia=1.0)
    write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), path)
    return path


@pytest.fixture(scope="session")
def same_tissue_three_scanners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tissue (1024 x 768, tumour) rendered by each synthetic scanner: A sharpest, C softest,
    JPEG quality 92 / 80 / 65."""
    folder = tmp_path_factory.mktemp("same-tissue")
    paths = {}
    for scanner in "ABC":
        paths[scanner] = folder / f"{scanner}.tiff"
        tissue = TissueSpec(seed=3, tumour=True, width=1024, height=768)
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), paths[scanner])
    return paths
