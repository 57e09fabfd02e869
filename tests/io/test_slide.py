"""The lazy reader on the public test slides and on generated slides."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import tiffslide

from napari_wsirobust._reader import napari_get_reader, read_slides
from napari_wsirobust.io import (
    MissingMPPWarning,
    NotASlideError,
    SlideNotFoundError,
    SlideReadError,
    open_slide,
)
from napari_wsirobust.io import slide as slide_module


@dataclass(frozen=True)
class SlideCase:
    filename: str
    levels: int
    level0_shape: tuple[int, int, int] | tuple[int, int]
    dtype: str
    mpp: float | None
    is_rgb: bool
    multiscale: bool


CASES = [
    SlideCase("cmu-1-small-region.svs", 1, (2967, 2220, 3), "uint8", 0.499, True, False),
    SlideCase("small_HE_levels.tiff", 4, (250, 300, 3), "uint8", None, True, True),
    SlideCase("kidney-48-5.tif", 1, (901, 1493, 3), "uint8", None, True, False),
    SlideCase("smalltif.tif", 1, (480, 640), "uint16", None, False, False),
]


@pytest.fixture(autouse=True)
def _fresh_warning_registry() -> None:
    slide_module._warned_missing_mpp.clear()


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.filename)
def test_public_slides_open_with_expected_structure(shared_slides: Path, case: SlideCase) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / case.filename)
    assert slide.level_count == case.levels
    assert slide.levels[0].shape == case.level0_shape
    assert str(slide.levels[0].dtype) == case.dtype
    assert slide.metadata.is_rgb is case.is_rgb
    if case.mpp is None:
        assert slide.mpp is None
    else:
        assert slide.mpp == pytest.approx((case.mpp, case.mpp))
    data, kwargs, kind = slide.to_layer_data()[0]
    assert kind == "image"
    assert kwargs["multiscale"] is case.multiscale
    assert kwargs["rgb"] is case.is_rgb
    expected_scale = (case.mpp, case.mpp) if case.mpp else (1.0, 1.0)
    assert kwargs["scale"] == pytest.approx(expected_scale)
    if case.multiscale:
        assert [lvl.shape[:2] for lvl in data] == [lvl.shape[:2] for lvl in slide.levels]


def test_cmu_metadata_and_um_scale(shared_slides: Path) -> None:
    slide = open_slide(shared_slides / "cmu-1-small-region.svs")
    m = slide.metadata
    assert m.vendor == "aperio"
    assert m.objective_power == 20
    assert m.mpp_source == "file"
    assert m.tile_size == (240, 240)
    assert set(m.associated_images) == {"label", "macro", "thumbnail"}
    assert slide.associated_image("label").ndim == 3
    _, kwargs, _ = slide.to_layer_data()[0]
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"]["wsirobust"]["mpp_x"] == pytest.approx(0.499)


@pytest.mark.parametrize(
    ("filename", "level", "location", "size"),
    [
        ("cmu-1-small-region.svs", 0, (0, 0), (1024, 1024)),
        ("cmu-1-small-region.svs", 0, (1100, 1800), (1024, 1024)),
        ("cmu-1-small-region.svs", 0, (1717, 2401), (503, 566)),  # touches the far corner
        ("small_HE_levels.tiff", 0, (37, 41), (200, 150)),
        ("small_HE_levels.tiff", 2, (40, 20), (30, 30)),
    ],
)
def test_region_pixels_equal_tiffslide(
    shared_slides: Path, filename: str, level: int, location: tuple[int, int], size: tuple[int, int]
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / filename)
    reference = tiffslide.TiffSlide(shared_slides / filename)
    ours = slide.read_region(location, level, size)
    theirs = reference.read_region(location, level, size, as_array=True)
    assert ours.shape == theirs.shape == (size[1], size[0], 3)
    np.testing.assert_array_equal(ours, theirs)


def test_broken_file_gives_clear_error(shared_slides: Path) -> None:
    with pytest.raises(
        SlideReadError,
        match=r"broken\.svs: not a readable TIFF-based slide .*openslide cannot open it either",
    ):
        open_slide(shared_slides / "broken.svs")


def test_missing_file_gives_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SlideNotFoundError, match="nope.svs: no such file"):
        open_slide(tmp_path / "nope.svs")


def test_grayscale_tiff_is_a_plain_image_not_a_slide(shared_slides: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / "smalltif.tif")
    data, kwargs, _ = slide.to_layer_data()[0]
    assert kwargs["rgb"] is False and kwargs["multiscale"] is False
    assert data.shape == (480, 640)
    lo, hi = kwargs["contrast_limits"]
    assert hi > lo
    assert any("screen DPI" in n for n in slide.metadata.notes)
    with pytest.raises(NotASlideError, match="smalltif.tif: is a 1-channel uint16 image"):
        slide.require_rgb()


def test_strip_tiff_without_mpp_warns_once_and_accepts_override(shared_slides: Path) -> None:
    path = shared_slides / "kidney-48-5.tif"
    with pytest.warns(MissingMPPWarning, match="kidney-48-5.tif: no usable pixel size"):
        slide = open_slide(path)
    assert slide.metadata.storage == "strips"
    assert slide.metadata.mpp_source == "missing"
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingMPPWarning)
        open_slide(path)  # the user is told once per file, not at every open
    fixed = open_slide(path, mpp=0.25)
    assert fixed.mpp == (0.25, 0.25)
    assert fixed.metadata.mpp_source == "override"
    assert fixed.to_layer_data()[0][1]["scale"] == (0.25, 0.25)
    with pytest.raises(ValueError, match="MPP override must be within"):
        open_slide(path, mpp=500.0)


@pytest.fixture
def tile_reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int, int]]:
    """Records every file tile any backend decodes."""
    from napari_wsirobust.io.source import TileSource

    reads: list[tuple[int, int, int]] = []
    for cls in TileSource.__subclasses__():
        original = cls.read_tile

        def counting(self, level, row, col, _original=original):  # type: ignore[no-untyped-def]
            reads.append((level, row, col))
            return _original(self, level, row, col)

        monkeypatch.setattr(cls, "read_tile", counting)
    return reads


@pytest.mark.parametrize("which", ["generated", "cmu"])
def test_opening_reads_no_pixels_and_reads_are_tile_aligned(
    which: str, tumour_slide: Path, shared_slides: Path, tile_reads: list[tuple[int, int, int]]
) -> None:
    path = tumour_slide if which == "generated" else shared_slides / "cmu-1-small-region.svs"
    slide = open_slide(path)
    slide.to_layer_data()
    assert tile_reads == []
    level0 = slide.levels[0]
    th, tw = slide.metadata.tile_size
    assert level0.chunksize[:2] == (th, tw)
    level0[th : 2 * th, tw : 2 * tw].compute()
    assert tile_reads == [(0, 1, 1)]  # exactly the one native tile
    tile_reads.clear()
    slide.clear_cache()
    slide.arrays[0][th - 4 : th + 4, tw - 4 : tw + 4]
    assert sorted(tile_reads) == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]  # a corner: four tiles


def test_strip_chunks_group_whole_strips(shared_slides: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / "smalltif.tif")
    rows_per_strip = 9
    rows = slide.levels[0].chunks[0]
    assert all(r % rows_per_strip == 0 for r in rows[:-1])
    assert slide.levels[0].chunks[1] == (640,)


def test_large_single_level_image_gets_lazy_overview_levels(tmp_path: Path) -> None:
    path = tmp_path / "flat.tif"
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (5000, 4500, 3), dtype=np.uint8)
    tifffile.imwrite(path, image, tile=(512, 512), photometric="rgb", compression="zlib")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(path, mpp=0.5)
    assert slide.metadata.virtual_levels >= 1
    assert slide.level_count == 1 + slide.metadata.virtual_levels
    assert slide.levels[1].shape == (2500, 2250, 3)
    np.testing.assert_array_equal(slide.levels[1][100:164, 200:264].compute(), image[200:328:2, 400:528:2])
    data, kwargs, _ = slide.to_layer_data()[0]
    assert kwargs["multiscale"] is True and len(data) == slide.level_count


def test_generated_slide_reads_as_pyramid_with_mpp(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide)
    assert slide.level_count >= 3
    assert slide.mpp == pytest.approx((0.5, 0.5))
    assert slide.metadata.level_dimensions[:3] == [(1024, 768), (512, 384), (256, 192)]
    with tifffile.TiffFile(tumour_slide) as tif:
        page = tif.pages[0]
        assert page.is_tiled and page.compression == tifffile.COMPRESSION.JPEG
    assert slide.best_level_for_downsample(2.0) == 1
    assert slide.best_level_for_downsample(3.9) == 1
    assert slide.best_level_for_downsample(1.0) == 0


def test_read_region_pads_outside_with_white(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide)
    region = slide.read_region((1000, 700), 0, (64, 128))
    assert region.shape == (128, 64, 3)
    assert (region[100:, :] == 255).all() and (region[:, 30:] == 255).all()


def test_content_id_changes_with_content(tmp_path: Path, tumour_slide: Path) -> None:
    copy = tmp_path / "copy.tiff"
    copy.write_bytes(tumour_slide.read_bytes())
    assert open_slide(copy).content_id() == open_slide(tumour_slide).content_id()
    data = bytearray(copy.read_bytes())
    data[-10] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert open_slide(copy).content_id() != open_slide(tumour_slide).content_id()


def test_get_reader_claims_slides_only_and_never_raises(tmp_path: Path, shared_slides: Path) -> None:
    assert napari_get_reader(str(tmp_path / "image.png")) is None
    assert napari_get_reader(str(tmp_path)) is None  # a folder without DICOM files
    assert napari_get_reader(str(tmp_path / "missing.svs")) is not None
    assert napari_get_reader([str(shared_slides / "cmu-1-small-region.svs"), "x.png"]) is None
    with pytest.raises(SlideReadError, match="broken.svs"):
        read_slides(str(shared_slides / "broken.svs"))
    layers = read_slides([str(shared_slides / "cmu-1-small-region.svs")])
    assert len(layers) == 1 and layers[0][1]["rgb"] is True
