"""JPEG quality read from quantisation tables: Pillow streams, synthetic slides, a real Aperio file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from napari_wsirobust.stain import jpeg_quality_of_slide
from napari_wsirobust.stain.jpeg import ijg_table, jpeg_quality_of_stream
from napari_wsirobust.synthetic import SCANNER_PROFILES, SyntheticSlideSpec, TissueSpec, write_synthetic_slide


@pytest.mark.parametrize("quality", [10, 30, 50, 65, 80, 92, 100])
def test_quality_of_pillow_jpeg_streams(quality: int) -> None:
    image = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    found = jpeg_quality_of_stream(buffer.getvalue())
    assert found is not None and found.quality == quality and found.residual == 0.0


def test_quality_of_synthetic_scanners_and_real_aperio(tmp_path: Path, shared_slides: Path) -> None:
    for scanner in "ABC":
        path = tmp_path / f"{scanner}.tiff"
        write_synthetic_slide(
            SyntheticSlideSpec.make(TissueSpec(seed=1, tumour=False, width=512, height=384), scanner), path
        )
        found = jpeg_quality_of_slide(path)
        assert found is not None and found.quality == SCANNER_PROFILES[scanner].jpeg_quality
    # the CMU-1 region's ImageDescription says "JPEG/RGB Q=30"
    aperio = jpeg_quality_of_slide(shared_slides / "cmu-1-small-region.svs")
    assert aperio is not None and aperio.quality == 30
    assert jpeg_quality_of_slide(shared_slides / "kidney-48-5.tif") is None  # not JPEG
    assert jpeg_quality_of_slide(shared_slides / "broken.svs") is None  # not a TIFF


def test_ijg_tables_are_monotone_in_quality() -> None:
    assert (ijg_table(10) >= ijg_table(50)).all() and (ijg_table(50) >= ijg_table(95)).all()
    assert ijg_table(50)[0] == 16 and ijg_table(100).max() == 1
