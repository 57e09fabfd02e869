"""A tumour slide big enough for a meaningful attention map, and a shared feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide


@pytest.fixture(scope="session")
def analysis_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048 x 1536 px at 0.5 µm/px, scanner B, 30 % tumour, obvious atypia; ground truth beside it."""
    path = tmp_path_factory.mktemp("analysis") / "tumour_B.tiff"
    tissue = TissueSpec(seed=21, tumour=True, width=2048, height=1536, tumour_fraction=0.3, atypia=1.0)
    write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), path)
    return path


@pytest.fixture(scope="session")
def analysis_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("analysis-cache")
