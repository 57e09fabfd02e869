"""Damaged files never cost the slide: blank tiles for undecodable data, clear errors otherwise."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust._reader import read_slides
from napari_wsirobust.io import DamagedTileWarning, SlideReadError, UnreadableRegionError, open_slide


def test_a_damaged_tile_reads_blank_is_warned_once_and_listed(shared_slides: Path, damaged_copy) -> None:
    source = shared_slides / "cmu-1-small-region.svs"
    path = damaged_copy(source, [5])  # row 0, column 5 of 240-px tiles
    good = np.asarray(open_slide(source).arrays[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slide = open_slide(path)
        pixels = np.asarray(slide.arrays[0])
        np.asarray(slide.arrays[0])  # read again: no second warning
    messages = [str(w.message) for w in caught if issubclass(w.category, DamagedTileWarning)]
    assert len(messages) == 1
    assert "level 0 tile (0, 5) at x 1200-1440, y 0-240 px" in messages[0]
    assert [(t.level, t.row, t.col) for t in slide.damaged_tiles] == [(0, 0, 5)]
    assert (pixels[0:240, 1200:1440] == 255).all()
    rest = np.ones(pixels.shape[:2], bool)
    rest[0:240, 1200:1440] = False
    np.testing.assert_array_equal(pixels[rest], good[rest])
    with pytest.raises(UnreadableRegionError):
        slide.read_level_window(0, 1190, 10, 1210, 20, strict=True)
    assert slide.read_level_window(0, 0, 0, 100, 100, strict=True).shape == (100, 100, 3)


def test_openslide_backend_loses_only_the_damaged_tile(shared_slides: Path, damaged_copy) -> None:
    source = shared_slides / "cmu-1-small-region.svs"
    path = damaged_copy(source, [5])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        slide = open_slide(path, backend="openslide")
        pixels = np.asarray(slide.arrays[0])
    assert [(t.level, t.row, t.col) for t in slide.damaged_tiles] == [(0, 0, 5)]
    np.testing.assert_array_equal(pixels[240:], np.asarray(open_slide(source).arrays[0])[240:])


def test_damaged_slide_opens_as_a_layer_and_lower_levels_still_show(tumour_slide: Path, damaged_copy) -> None:
    path = damaged_copy(tumour_slide, [0, 1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        data, kwargs, _ = read_slides(str(path))[0]
        overview = np.asarray(data[-1])
        full = np.asarray(data[0][:256, :256])
    assert kwargs["multiscale"] is True
    assert (full == 255).all()
    assert overview.std() > 5  # the lower levels still have the tissue


def test_tile_data_past_the_end_of_the_file_is_reported_as_such(tumour_slide: Path, tmp_path: Path) -> None:
    import tifffile

    with tifffile.TiffFile(tumour_slide) as tf:
        page = tf.series[0].levels[0].pages[0]
        cut = int(page.dataoffsets[-1]) + 10
        ifd_end = max(p.offset for p in tf.pages) + 1000
    data = tumour_slide.read_bytes()
    if cut < ifd_end:
        pytest.skip("the writer puts directories after the pixel data")
    short = tmp_path / "short.tiff"
    short.write_bytes(data[:cut])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        slide = open_slide(short)
        np.asarray(slide.arrays[0])
    assert slide.damaged_tiles and "an incomplete copy?" in slide.damaged_tiles[-1].reason
    assert any(issubclass(w.category, DamagedTileWarning) for w in caught)


@pytest.mark.parametrize("fraction", [0.001, 0.3, 0.9, 0.999])
def test_truncated_svs_gives_one_clear_sentence(shared_slides: Path, tmp_path: Path, fraction: float) -> None:
    data = (shared_slides / "cmu-1-small-region.svs").read_bytes()
    path = tmp_path / "incomplete.svs"
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(
        SlideReadError, match=r"incomplete\.svs: truncated: ends at [\d,]+ bytes but its image directory"
    ):
        open_slide(path)
