"""The band-by-band generator writes exactly the slides the whole-array generator wrote, in bounded
memory, and never leaves a truncated slide or a temporary file behind."""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_wsirobust.synthetic import (
    SyntheticSlideSpec,
    TissueSpec,
    load_ground_truth,
    write_synthetic_slide,
)
from napari_wsirobust.synthetic.slide import render_bands, render_region
from napari_wsirobust.synthetic.spool import LevelSpool, downsample2
from napari_wsirobust.synthetic.writer import TILE, write_pyramid_from_bands


def _sha(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()


def _decoded_levels(path: Path) -> list[np.ndarray]:
    with tifffile.TiffFile(path) as tif:
        return [level.asarray() for level in tif.series[0].levels]


def _whole_array_downsample2(image: np.ndarray) -> np.ndarray:
    """The generator's original 2x box filter, applied to a whole level at once."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    view = image[:h, :w].reshape(h // 2, 2, w // 2, 2, -1).astype(np.uint16)
    return ((view.sum(axis=(1, 3)) + 2) // 4).astype(np.uint8)


@dataclass(frozen=True)
class PinnedSlide:
    """Generation parameters and the sha256 of each decoded level and ground-truth mask."""

    seed: int
    tumour: bool
    width: int
    height: int
    scanner: str
    levels: tuple[tuple[tuple[int, int], str], ...]  # ((height, width), sha256) per level
    tissue: str
    tumour_mask: str

    @property
    def id(self) -> str:
        return f"{self.width}x{self.height}-{self.scanner}-{'tumour' if self.tumour else 'normal'}"

    def spec(self) -> SyntheticSlideSpec:
        tissue = TissueSpec(seed=self.seed, tumour=self.tumour, width=self.width, height=self.height)
        return SyntheticSlideSpec.make(tissue, self.scanner)


# Computed with the whole-array generator (commit ef3626e, before the writer streamed its reduced
# levels through temporary files): write_synthetic_slide(spec, path), then sha256 of the bytes of
# tifffile.TiffFile(path).series[0].levels[k].asarray() (uint8, (H, W, 3), C order) and of the
# .gt.npz "tissue" and "tumour" masks as load_ground_truth returns them (bool). Machine: x86-64 with
# AVX-512, numpy 2.4.6, scipy 1.17.1, tifffile 2026.3.3, imagecodecs 2026.3.6 (libjpeg-turbo). The
# whole files were byte-identical too (sha256 91676663..., 60723d5c..., 721aa966..., 4efd2903...).
# float32 exp/power may round differently on another CPU or numpy build, so a mismatch elsewhere is
# not by itself a regression; test_streamed_pyramid_equals_whole_array_pyramid checks on any machine.
PINNED = [
    PinnedSlide(
        seed=3, tumour=True, width=3000, height=2000, scanner="B",
        levels=(
            ((2000, 3000), "321cc22447595f77abb82b1401595e671d7ab5e96adab0ca863549c32ecae15b"),
            ((1000, 1500), "3952fffb6de0e033a481c63e32b820d3993f283a338e8f574982a87faa7b2886"),
            ((500, 750), "1ed009c4fbf3c64be9e9f28e1a5df55ace96dad5b6b96c41697392604bc75de4"),
        ),
        tissue="de47c92ad1daac5d604b5b560f7a890601faad8e8471b7e7145e0adc65646e30",
        tumour_mask="b93921ec3a9fddc280b84a998b61cdd0cb1be3a77638f89fae2c9eb1f6ef112a",
    ),
    PinnedSlide(  # 1700 rows: a last band of 164 rows; odd-sized reduced levels
        seed=5, tumour=True, width=2900, height=1700, scanner="C",
        levels=(
            ((1700, 2900), "d93daab6cd1a82f17076445e5a0f98b340fb6bd39993478764d8c7f577689393"),
            ((850, 1450), "592c95cfbfa8dd8fa9e2fc90b943f94313a713944ed1bc3567cce60d37b5be87"),
            ((425, 725), "013109bcfe91ec0c9364a6b11a1e6f4440cff64ed63159d0786ec0c273521073"),
        ),
        tissue="1e27b1411e8fd53e1f2f7aa878c00dbf3679e8f388d4019606f6570dcc88af93",
        tumour_mask="e69e46e5835b6d9dddf3c2f45bc8c1ce965bb4bd57679220a9b8b1f7f4930205",
    ),
    PinnedSlide(
        seed=7, tumour=False, width=2900, height=1700, scanner="A",
        levels=(
            ((1700, 2900), "9e58e0131264672b85ee7e8ea63c7f831b847fd9008b54f63cd6278e7c1c60f0"),
            ((850, 1450), "ae23acf90fab6c4342d34c5733a360f1f8869dbdf208ac85fdd327d99354aae0"),
            ((425, 725), "a5cff04d2ac6dae9cace1c592d61f6a1523d644388689a8f5137b93e508d5b8f"),
        ),
        tissue="a059d15c3e4d7e79330de100cfba14d00256fe7a81c1a4ae3851f50ceda35f7f",
        tumour_mask="e7364615a86dff267f5bbab54b752ee4769b5458193e16c961dbaf3e8638daf6",
    ),
    PinnedSlide(  # four levels; level 2 has an odd height (675), dropped at level 3
        seed=11, tumour=True, width=4100, height=2700, scanner="A",
        levels=(
            ((2700, 4100), "0ac8854957ba99596154c3699b59ebd6399eaf6eaf69364d8cf86987ffe66c47"),
            ((1350, 2050), "62a3532175d05b08c8f903807f4128ad588ca967b8bbf52158475eb961b74b4e"),
            ((675, 1025), "c4cd4977ea9ed7a3f9af8718c18b1f92e93b419994cf3f0b7c75327745f0c214"),
            ((337, 512), "ed5c465538702bd8ae30bcd364456a48844bd858ed9ddbda824cae50651bc165"),
        ),
        tissue="cc3bf80f681d8b11cf4b07fbea508a2ce2ad2beab4bb14869d0d03e255b9dc38",
        tumour_mask="0bccbd8941ab202c23f23f787e81ab16601de54a01c5704297f2f3c500614bc3",
    ),
]  # fmt: skip


@pytest.mark.parametrize("case", PINNED, ids=lambda c: c.id)
def test_generated_slide_is_pixel_identical_to_the_whole_array_generator(
    case: PinnedSlide, tmp_path: Path
) -> None:
    path = write_synthetic_slide(case.spec(), tmp_path / "slide.tiff").slide_path
    levels = _decoded_levels(path)
    assert [(level.shape[:2], _sha(level)) for level in levels] == list(case.levels)
    truth = load_ground_truth(path)
    assert (_sha(truth.tissue), _sha(truth.tumour)) == (case.tissue, case.tumour_mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["slide.tiff", "slide.tiff.gt.npz"]


def test_streamed_pyramid_equals_whole_array_pyramid(tmp_path: Path) -> None:
    """Independent of the CPU: the streamed writer against the whole image held in memory, every
    reduced level downsampled as a whole and handed to tifffile as one array."""
    spec = SyntheticSlideSpec.make(TissueSpec(seed=2, tumour=True, width=1700, height=1300), "B")
    path = write_synthetic_slide(spec, tmp_path / "streamed.tiff").slide_path
    levels = [render_region(spec)]
    while len(levels) < 3:
        levels.append(_whole_array_downsample2(levels[-1]))
    options = dict(photometric="rgb", tile=(TILE, TILE), compression="jpeg", compressionargs={"level": 80})
    reference = tmp_path / "whole.tiff"
    with tifffile.TiffWriter(reference) as tif:
        tif.write(levels[0], subifds=len(levels) - 1, **options)
        for level in levels[1:]:
            tif.write(level, subfiletype=1, **options)
    for streamed, whole in zip(_decoded_levels(path), _decoded_levels(reference), strict=True):
        np.testing.assert_array_equal(streamed, whole)


def test_downsample2_is_the_whole_array_box_filter() -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 51, 3), dtype=np.uint8)
    image[:2, :2] = 255  # the largest sums and the round-half-up case
    np.testing.assert_array_equal(downsample2(image), _whole_array_downsample2(image))


@pytest.mark.parametrize("heights", [(256, 256, 101), (1, 2, 3, 5, 7, 11, 13), (64,) * 5], ids=str)
def test_level_spool_matches_downsampling_each_level_whole(heights: tuple[int, ...], tmp_path: Path) -> None:
    """Odd band heights leave a row waiting at some level; the result is still the whole-level one."""
    image = np.random.default_rng(1).integers(0, 256, (sum(heights), 203, 3), dtype=np.uint8)
    with LevelSpool(4, image.shape[1], tmp_path) as spool:
        for start, h in zip(np.cumsum((0, *heights)), heights):
            spool.push(image[start : start + h])
        expected = image
        for k in range(1, 5):
            expected = _whole_array_downsample2(expected)
            got = np.concatenate(list(spool.bands(k, rows=16)))
            np.testing.assert_array_equal(got, expected)
            assert (spool.widths[k - 1], spool.heights[k - 1]) == (expected.shape[1], expected.shape[0])
    assert list(tmp_path.iterdir()) == []  # the spool's files never had a name


def _flat_bands(width: int, height: int) -> Iterator[np.ndarray]:
    for y in range(0, height, TILE):
        band = np.full((min(TILE, height - y), width, 3), 200, np.uint8)
        band[:, ::7] = y % 251  # some structure for the JPEG coder
        yield band


def _traced_peak(run: object) -> int:
    tracemalloc.start()
    try:
        run()  # type: ignore[operator]
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_writer_memory_does_not_grow_with_the_slide(tmp_path: Path) -> None:
    """A slide 16 times taller costs the writer no more memory: a few bands, never a whole level
    (the whole-array writer peaked at 113 bands here, holding level 1 and copies of it)."""
    width = 1024
    band_bytes = TILE * width * 3

    def write(height: int) -> None:
        write_pyramid_from_bands(tmp_path / f"{height}.tiff", _flat_bands(width, height), width, height, 0.5)

    short, tall = _traced_peak(lambda: write(1024)), _traced_peak(lambda: write(16384))
    assert tall < 4 * band_bytes
    assert tall < short + band_bytes


def test_band_rendering_memory_is_a_few_bytes_per_pixel() -> None:
    """One band of a wide slide: concentrations, light and pixels, no full-band temporaries per step
    (the unchunked renderer peaked at 57 bytes per band pixel, this one at 30)."""
    spec = SyntheticSlideSpec.make(TissueSpec(seed=6, tumour=True, width=8192, height=256), "B")
    bands = render_bands(spec)
    peak = _traced_peak(lambda: next(bands))
    assert peak < 40 * 8192 * 256


def test_failed_write_leaves_neither_slide_nor_temporary_files(tmp_path: Path) -> None:
    def failing() -> Iterator[np.ndarray]:
        yield from _flat_bands(600, 512)
        raise RuntimeError("killed half way")

    with pytest.raises(RuntimeError, match="half way"):
        write_pyramid_from_bands(tmp_path / "slide.tiff", failing(), 600, 1000, 0.5)
    assert list(tmp_path.iterdir()) == []
