"""Every backend behind open_slide gives the same slide: pixels, geometry, metadata, layers."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust._reader import napari_get_reader, read_slides
from napari_wsirobust.errors import InputError
from napari_wsirobust.io import SlideReadError, open_slide, tiff_source
from napari_wsirobust.io import backends as backends_module

# (file, backends that open it); OpenSlide does not read strip TIFFs or grayscale images.
SHARED = [
    ("cmu-1-small-region.svs", ["tiffslide", "openslide"]),
    ("small_HE_levels.tiff", ["tiffslide", "openslide"]),
    ("kidney-48-5.tif", ["tiffslide"]),
    ("smalltif.tif", ["tiffslide"]),
]


def _quiet_open(path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return open_slide(path, **kwargs)  # type: ignore[arg-type]


def _regions(shape: tuple[int, ...], n: int, seed: int) -> list[tuple[int, int, int, int]]:
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    out = []
    for _ in range(n):
        rw, rh = int(rng.integers(1, min(w, 700) + 1)), int(rng.integers(1, min(h, 700) + 1))
        x, y = int(rng.integers(0, w - rw + 1)), int(rng.integers(0, h - rh + 1))
        out.append((x, y, rw, rh))
    return out


@pytest.mark.parametrize(("filename", "names"), SHARED, ids=[s[0] for s in SHARED])
def test_same_pixels_through_every_backend_that_opens_the_file(
    shared_slides: Path, filename: str, names: list[str]
) -> None:
    path = shared_slides / filename
    slides = {name: _quiet_open(path, backend=name) for name in names}
    reference = slides["tiffslide"]
    assert all(s.backend == name and s.metadata.backend == name for name, s in slides.items())
    for name, slide in slides.items():
        assert slide.metadata.level_dimensions == reference.metadata.level_dimensions
        assert slide.mpp == reference.mpp
        for level in range(reference.level_count):
            downsample = reference.level_downsample(level)
            if name == "openslide" and any(d != int(d) for d in downsample):
                continue  # OpenSlide resamples levels whose downsample is not an integer
            for x, y, w, h in _regions(reference.arrays[level].shape, 6, level):
                ours = slide.read_level_window(level, x, y, x + w, y + h)
                np.testing.assert_array_equal(ours, reference.read_level_window(level, x, y, x + w, y + h))


@pytest.mark.parametrize("filename", ["kidney-48-5.tif", "smalltif.tif"])
def test_a_backend_that_cannot_read_a_file_says_so(shared_slides: Path, filename: str) -> None:
    with pytest.raises(SlideReadError, match=f"{filename}: OpenSlide cannot open it"):
        open_slide(shared_slides / filename, backend="openslide")


def test_dicom_folder_opens_as_multiscale_um_layer_equal_to_the_source(
    dicom_slide: Path, shared_slides: Path
) -> None:
    source = open_slide(shared_slides / "cmu-1-small-region.svs")
    slide = open_slide(dicom_slide)
    assert slide.backend == "wsidicom"
    assert slide.level_count == 5 and slide.dimensions == source.dimensions
    assert slide.mpp == pytest.approx((0.499, 0.499))
    assert slide.metadata.tile_size == (240, 240)
    assert {"label", "macro"} <= set(slide.metadata.associated_images)
    assert slide.associated_image("label").ndim == 3
    np.testing.assert_array_equal(np.asarray(slide.arrays[0]), np.asarray(source.arrays[0]))
    data, kwargs, kind = read_slides(str(dicom_slide))[0]
    assert kind == "image" and kwargs["multiscale"] is True and len(data) == 5
    assert kwargs["scale"] == pytest.approx((0.499, 0.499)) and kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"]["wsirobust"]["backend"] == "wsidicom"
    assert napari_get_reader(str(dicom_slide)) is not None


def test_any_one_dcm_file_opens_its_series(dicom_slide: Path) -> None:
    whole = open_slide(dicom_slide)
    for dcm in sorted(dicom_slide.glob("*.dcm"))[:3]:
        one = open_slide(dcm)
        assert one.backend == "wsidicom" and one.metadata.level_dimensions == whole.metadata.level_dimensions


def test_openslide_reads_the_dicom_base_level_like_wsidicom(dicom_slide: Path) -> None:
    via_openslide = _quiet_open(dicom_slide, backend="openslide")
    np.testing.assert_array_equal(
        np.asarray(via_openslide.arrays[0]), np.asarray(open_slide(dicom_slide).arrays[0])
    )


def test_auto_picks_by_what_the_file_is(tmp_path: Path, dicom_slide: Path, shared_slides: Path) -> None:
    assert backends_module.candidates(dicom_slide) == ["wsidicom", "openslide"]
    assert backends_module.candidates(shared_slides / "cmu-1-small-region.svs") == ["tiffslide", "openslide"]
    mrxs = tmp_path / "slide.mrxs"
    mrxs.write_bytes(b"[GENERAL]\n")
    assert backends_module.candidates(mrxs) == ["openslide"]
    assert backends_module.candidates(mrxs, "wsidicom") == ["wsidicom"]
    with pytest.raises(InputError, match="backend must be one of auto, tiffslide, openslide, wsidicom"):
        open_slide(shared_slides / "cmu-1-small-region.svs", backend="bioformats")


def test_auto_falls_back_in_order_and_says_which_backend_opened(
    shared_slides: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(self: object, path: Path) -> None:
        raise SlideReadError(path, "not a readable TIFF-based slide (simulated)")

    monkeypatch.setattr(tiff_source.TiffSource, "__init__", refuse)
    slide = open_slide(shared_slides / "cmu-1-small-region.svs")
    assert slide.backend == "openslide"
    assert any("tiffslide" in note and "simulated" in note for note in slide.metadata.notes)
    with pytest.raises(SlideReadError, match="simulated"):
        open_slide(shared_slides / "cmu-1-small-region.svs", backend="tiffslide")


def test_a_folder_that_is_not_a_dicom_study_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "looks_like.svs"
    folder.mkdir()
    with pytest.raises(
        SlideReadError, match="looks_like.svs: is a folder, not a slide file or a DICOM WSI folder"
    ):
        open_slide(folder)
