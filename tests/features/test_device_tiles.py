"""Encoded file tiles and the device tile path: same pixels and embeddings as the CPU path.

The device path runs here on the CPU (``decode_on_device=True``): torchvision's batched
``decode_jpeg`` then uses libjpeg-turbo instead of nvJPEG, and every other step is the same code.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from napari_wsirobust.encoders import create_encoder
from napari_wsirobust.features import DeviceReadStats, DeviceTileReader, embed_tiles, run_to_completion
from napari_wsirobust.features import pipeline as pipeline_module
from napari_wsirobust.features.device_tiles import Windows, resize_like_pil
from napari_wsirobust.io import WSI, DamagedTileWarning, open_slide
from napari_wsirobust.tiling import Scope, TileGrid, TilingConfig, make_tile_grid, read_tile

# torchvision 0.29 deprecates its image codecs in favour of torchcodec (not installed here)
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

SVS = "cmu-1-small-region.svs"  # Aperio: RGB in abbreviated JPEG tiles, tables in JPEGTables


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("effnet-lite0-imagenet", random_init=True)


def grid_of(slide: WSI, target_mpp: float, limit: int | None = None) -> TileGrid:
    grid = make_tile_grid(slide, TilingConfig(target_mpp=target_mpp, min_tissue_fraction=0.0), Scope.whole())
    return grid if limit is None else grid.subset(np.arange(min(limit, len(grid))))


def cpu_tiles(slide: WSI, grid: TileGrid) -> np.ndarray:
    return np.stack([read_tile(slide, grid, i) for i in range(len(grid))])


def decode(data: bytes) -> np.ndarray:
    from torchvision.io import ImageReadMode, decode_jpeg

    tile = decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    return tile.permute(1, 2, 0).numpy()


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


# -- encoded tiles -----------------------------------------------------------------------------------
def assert_encoded_tiles_decode_like_cpu(slide: WSI, level: int) -> None:
    array = slide.arrays[level]
    th, tw = array.tile
    rows, cols = -(-array.shape[0] // th), -(-array.shape[1] // tw)
    worst = 0
    for r in range(rows):
        for c in range(cols):
            encoded = slide.encoded_tile(level, r, c)
            assert encoded is not None and encoded.codec == "jpeg"
            tile = decode(encoded.data)
            assert tile.shape == (th, tw, 3)
            ref = slide.read_level_window(level, c * tw, r * th, (c + 1) * tw, (r + 1) * th)
            h, w = min(th, array.shape[0] - r * th), min(tw, array.shape[1] - c * tw)
            worst = max(worst, max_diff(tile[:h, :w], ref[:h, :w]))
    assert worst <= 1  # measured: 0 (the same libjpeg-turbo decodes both)


def test_aperio_tiles_become_standalone_rgb_jpegs(shared_slides: Path) -> None:
    path = shared_slides / SVS
    with open_slide(path) as slide:
        assert slide.encoded_codec(0) == "jpeg"
        encoded = slide.encoded_tile(0, 0, 0)
        assert encoded is not None
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            stored = Path(path).read_bytes()[
                page.dataoffsets[0] : page.dataoffsets[0] + page.databytecounts[0]
            ]
            tables = page.jpegtables
        assert encoded.data[:2] == b"\xff\xd8" and encoded.data.endswith(stored[2:])
        assert b"Adobe" in encoded.data and tables[2:-2] in encoded.data
        assert_encoded_tiles_decode_like_cpu(slide, 0)
        # without the Adobe marker a decoder takes the RGB samples for YCbCr
        plain = encoded.data.replace(b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00", b"")
        assert max_diff(decode(plain), slide.read_level_window(0, 0, 0, 240, 240)) > 50


def test_ycbcr_pyramid_tiles_are_given_as_stored(tumour_slide: Path) -> None:
    with open_slide(tumour_slide) as slide:
        for level in range(slide.level_count):
            assert slide.encoded_codec(level) == "jpeg"
            encoded = slide.encoded_tile(level, 0, 0)
            assert encoded is not None and b"Adobe" not in encoded.data
            assert_encoded_tiles_decode_like_cpu(slide, level)


@pytest.mark.parametrize("name", ["small_HE_levels.tiff", "kidney-48-5.tif"])
def test_non_jpeg_slides_offer_no_encoded_tiles(shared_slides: Path, name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slide = open_slide(shared_slides / name, mpp=0.5)
    assert all(slide.encoded_codec(level) is None for level in range(slide.level_count))
    assert slide.encoded_tile(0, 0, 0) is None


def test_colour_managed_slides_offer_no_encoded_tiles(profiled_slide: Path, tmp_path: Path) -> None:
    with tifffile.TiffFile(profiled_slide) as tf:
        image, icc = tf.pages[0].asarray(), tf.pages[0].tags[34675].value
    path = tmp_path / "profiled_jpeg.tiff"
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        compression="jpeg",
        resolution=(20000, 20000),
        resolutionunit="CENTIMETER",
        extratags=[(34675, 7, None, icc, True)],
    )
    assert open_slide(path).encoded_codec(0) == "jpeg"
    with open_slide(path, color="srgb") as slide:
        assert slide.encoded_codec(0) is None and slide.encoded_tile(0, 0, 0) is None


# -- resizing ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResizeCase:
    size: int
    scale: float  # window / tile
    offset: float  # fractional start of the box

    def __str__(self) -> str:
        return f"{self.size}px-x{self.scale}-at{self.offset}"


RESIZE_CASES = [
    ResizeCase(32, 2.0, 0.0),
    ResizeCase(32, 2.0, 0.4),
    ResizeCase(32, 1.3, 0.0),
    ResizeCase(32, 1.3, 0.77),
    ResizeCase(24, 2.37, 0.5),
    ResizeCase(32, 1.0, 0.3),
    ResizeCase(32, 0.77, 0.0),
    ResizeCase(32, 0.5, 1.7),
]


@pytest.mark.parametrize("case", RESIZE_CASES, ids=str)
def test_resize_equals_pil_exactly(case: ResizeCase) -> None:
    rng = np.random.default_rng(7)
    ts, w = case.size, case.size * case.scale
    xa, xb = 0, int(np.ceil(case.offset + w))
    images = [rng.integers(0, 256, (xb, xb, 3), dtype=np.uint8) for _ in range(3)]
    images[1] = np.clip(np.cumsum(rng.integers(-4, 5, images[1].shape), axis=1) + 128, 0, 255).astype(
        np.uint8
    )
    box = (case.offset, case.offset, case.offset + w, case.offset + w)
    windows = Windows(
        np.full(3, xa),
        np.full(3, xa),
        np.full(3, xb),
        np.full(3, xb),
        np.tile(box, (3, 1)),
        not w > ts,
        np.zeros(3, bool),
    )
    columns = torch.from_numpy(np.stack(images)).transpose(1, 2).contiguous()
    mine = resize_like_pil(columns, windows, ts).numpy()
    filt = Image.Resampling.BOX if w > ts else Image.Resampling.BILINEAR
    for image, tile in zip(images, mine):
        ref = np.asarray(Image.fromarray(image).resize((ts, ts), resample=filt, box=box))
        np.testing.assert_array_equal(tile, ref)


@dataclass(frozen=True)
class GridCase:
    slide: str  # "svs" (0.499 µm/px, one level) or "pyramid" (generated, 0.5 µm/px, 2x levels)
    target_mpp: float

    def __str__(self) -> str:
        return f"{self.slide}-{self.target_mpp}"


GRID_CASES = [
    GridCase("svs", 0.4990),  # the slide's own pixel size: windows are the tiles
    GridCase("svs", 0.998),  # 2x, BOX over whole pixels
    GridCase("svs", 0.75),  # 1.5x, BOX with fractional boxes
    GridCase("svs", 1.3),  # 2.6x
    GridCase("svs", 0.4),  # upscaling, BILINEAR
    GridCase("pyramid", 0.5),
    GridCase("pyramid", 1.0),  # read from level 1 at its own size
    GridCase("pyramid", 1.6),  # level 1, shrunk 1.6x
    GridCase("pyramid", 0.45),  # level 0, upscaled
]


@pytest.mark.parametrize("case", GRID_CASES, ids=str)
def test_device_tiles_equal_read_tile(
    case: GridCase, shared_slides: Path, tumour_slide: Path, encoder
) -> None:
    slide = open_slide(shared_slides / SVS if case.slide == "svs" else tumour_slide)
    grid = grid_of(slide, case.target_mpp, limit=24)
    reader = DeviceTileReader(slide, grid, encoder, torch.device("cpu"))
    tiles, unreadable = reader.read_tiles(np.arange(len(grid)))
    assert not unreadable.any()
    assert reader.stats.device_tiles == len(grid) and reader.stats.host_tiles == 0
    assert max_diff(tiles.numpy(), cpu_tiles(slide, grid)) <= 1  # measured: 0


# -- fallbacks ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "mpp", "target_mpp"), [("small_HE_levels.tiff", 0.5, 0.3), ("kidney-48-5.tif", 0.25, 0.5)]
)
def test_non_jpeg_slides_are_read_on_the_cpu(
    shared_slides: Path, name: str, mpp: float, target_mpp: float, encoder
) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slide = open_slide(shared_slides / name, mpp=mpp)
    grid = grid_of(slide, target_mpp, limit=12)
    assert len(grid) >= 2
    reader = DeviceTileReader(slide, grid, encoder, torch.device("cpu"))
    tiles, _ = reader.read_tiles(np.arange(len(grid)))
    np.testing.assert_array_equal(tiles.numpy(), cpu_tiles(slide, grid))
    assert reader.stats.host_tiles == len(grid) and reader.stats.decode_calls == 0


def test_damaged_tiles_give_nan_rows_as_on_the_cpu(shared_slides: Path, damaged_copy, encoder) -> None:
    path = damaged_copy(shared_slides / SVS, [5, 20])  # tiles (0, 5) and (2, 1) of 240 px
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        cpu_slide, dev_slide = open_slide(path), open_slide(path)
        grid = grid_of(cpu_slide, 0.75, limit=40)
        expected = run_to_completion(embed_tiles(cpu_slide, grid, encoder, batch_size=16))
        stats = DeviceReadStats()
        got = run_to_completion(
            embed_tiles(dev_slide, grid, encoder, batch_size=16, decode_on_device=True, device_stats=stats)
        )
    nan = np.isnan(expected).any(axis=1)
    assert nan.any() and not nan.all()
    np.testing.assert_array_equal(np.isnan(got).any(axis=1), nan)
    np.testing.assert_allclose(got[~nan], expected[~nan], atol=1e-5)
    assert stats.host_tiles == nan.sum() and stats.device_tiles == (~nan).sum()
    reasons = {(t.row, t.col): t.reason for t in cpu_slide.damaged_tiles}
    assert {(t.row, t.col): t.reason for t in dev_slide.damaged_tiles} == reasons
    assert dev_slide.encoded_tile(0, 0, 5) is None  # known damaged: only the decoded path speaks for it


def test_tile_data_past_the_end_of_the_file(tumour_slide: Path, tmp_path: Path, encoder) -> None:
    with tifffile.TiffFile(tumour_slide) as tf:
        page = tf.series[0].levels[0].pages[0]
        cut = int(page.dataoffsets[-1]) + 10
        ifd_end = max(p.offset for p in tf.pages) + 1000
        last = len(page.dataoffsets) - 1
    if cut < ifd_end:
        pytest.skip("the writer puts directories after the pixel data")
    short = tmp_path / "short.tiff"
    short.write_bytes(tumour_slide.read_bytes()[:cut])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        slide = open_slide(short)
        cols = -(-slide.arrays[0].shape[1] // 256)
        assert slide.encoded_tile(0, last // cols, last % cols) is None
        grid = grid_of(slide, 0.5)
        expected = run_to_completion(embed_tiles(open_slide(short), grid, encoder, batch_size=8))
        got = run_to_completion(embed_tiles(slide, grid, encoder, batch_size=8, decode_on_device=True))
    assert np.isnan(expected).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    assert "an incomplete copy?" in slide.damaged_tiles[-1].reason


def test_a_tile_the_decoder_rejects_costs_only_its_windows(
    shared_slides: Path, tmp_path: Path, encoder
) -> None:
    source = shared_slides / SVS
    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tf:
        offset, count = int(tf.pages[0].dataoffsets[7]), int(tf.pages[0].databytecounts[7])
    data[offset + 2 : offset + count] = bytes(count - 2)  # a JPEG start, then nothing decodable
    path = tmp_path / "bad_stream.svs"
    path.write_bytes(bytes(data))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DamagedTileWarning)
        slide = open_slide(path)
        grid = grid_of(slide, 0.5, limit=10)
        reader = DeviceTileReader(slide, grid, encoder, torch.device("cpu"))
        tiles, unreadable = reader.read_tiles(np.arange(len(grid)))
    assert unreadable.any() and not unreadable.all()
    assert [(t.row, t.col) for t in slide.damaged_tiles] == [(0, 7)]
    assert slide.encoded_tile(0, 0, 7) is None  # its stream starts well, but it is known damaged now
    np.testing.assert_array_equal(
        tiles.numpy()[~unreadable], cpu_tiles(open_slide(source), grid)[~unreadable]
    )


def test_a_level_whose_device_decoder_disagrees_is_read_on_the_cpu(shared_slides: Path, encoder) -> None:
    slide = open_slide(shared_slides / SVS)
    grid = grid_of(slide, 0.75, limit=16)
    reader = DeviceTileReader(slide, grid, encoder, torch.device("cpu"))
    decode_fn = reader._decode
    reader._decode = lambda streams, device: [
        (t.int() + 3).clamp(0, 255).byte() for t in decode_fn(streams, device)
    ]
    tiles, _ = reader.read_tiles(np.arange(len(grid)))
    np.testing.assert_array_equal(tiles.numpy(), cpu_tiles(slide, grid))
    assert reader.stats.level_check == {0: 3} and reader.stats.decode_calls == 0
    assert reader.stats.host_tiles == len(grid)


def test_a_transform_sends_every_tile_through_the_cpu(tumour_slide: Path, encoder) -> None:
    def invert(tile: np.ndarray, row: int, col: int) -> np.ndarray:
        return 255 - tile

    slide = open_slide(tumour_slide)
    grid = grid_of(slide, 0.5, limit=8)
    stats = DeviceReadStats()
    got = run_to_completion(
        embed_tiles(slide, grid, encoder, transform=invert, decode_on_device=True, device_stats=stats)
    )
    expected = run_to_completion(embed_tiles(slide, grid, encoder, transform=invert))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert stats.host_tiles == len(grid) and stats.decode_calls == 0


# -- batching and the pipeline -----------------------------------------------------------------------
def test_batch_size_changes_nothing_and_each_batch_is_one_decode_call(shared_slides: Path, encoder) -> None:
    slide = open_slide(shared_slides / SVS)
    grid = grid_of(slide, 0.75, limit=40)
    results = {}
    for batch in (1, 7, 32):
        reader = DeviceTileReader(slide, grid, encoder, torch.device("cpu"))
        decode_fn, calls = reader._decode, []

        def counting(streams, device, decode_fn=decode_fn, calls=calls):  # type: ignore[no-untyped-def]
            calls.append(len(streams))
            return decode_fn(streams, device)

        reader._decode = counting
        chunks = [np.arange(i, min(i + batch, len(grid))) for i in range(0, len(grid), batch)]
        results[batch] = torch.cat([reader.read_tiles(c)[0] for c in chunks]).numpy()
        assert len(calls) == len(chunks) + 1  # one per batch, and one level check
        assert reader.stats.decode_calls == len(chunks) and reader.stats.check_calls == 1
    np.testing.assert_array_equal(results[1], results[7])
    np.testing.assert_array_equal(results[1], results[32])
    embeddings = {
        b: run_to_completion(embed_tiles(slide, grid, encoder, batch_size=b, decode_on_device=True))
        for b in (1, 7, 32)
    }
    np.testing.assert_allclose(embeddings[1], embeddings[7], atol=1e-5)
    np.testing.assert_allclose(embeddings[1], embeddings[32], atol=1e-5)


@pytest.mark.parametrize("target_mpp", [0.5, 0.8])
def test_embed_tiles_on_device_equals_the_default_path(
    tumour_slide: Path, encoder, target_mpp: float
) -> None:
    slide = open_slide(tumour_slide)
    grid = grid_of(slide, target_mpp)
    stats = DeviceReadStats()
    progress = []
    gen = embed_tiles(slide, grid, encoder, batch_size=5, decode_on_device=True, device_stats=stats)
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            got = stop.value
            break
    expected = run_to_completion(embed_tiles(slide, grid, encoder, batch_size=5))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert [p.done for p in progress] == list(range(5, len(grid), 5)) + [len(grid)]
    assert stats.device_tiles == len(grid) and stats.host_tiles == 0


def test_the_cpu_device_uses_the_default_path_unless_asked(
    tumour_slide: Path, encoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the device path was not asked for")

    monkeypatch.setattr(pipeline_module, "DeviceTileReader", refuse)
    slide = open_slide(tumour_slide)
    out = run_to_completion(embed_tiles(slide, grid_of(slide, 0.5, limit=4), encoder))
    assert out.shape == (4, encoder.spec.embed_dim)


@pytest.mark.gpu
def test_cuda_device_path_equals_the_cpu_path(shared_slides: Path, tumour_slide: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    gpu_encoder = create_encoder("effnet-lite0-imagenet", random_init=True, device="cuda")
    for path in (shared_slides / SVS, tumour_slide):
        slide = open_slide(path)
        grid = grid_of(slide, 0.75, limit=48)
        reader = DeviceTileReader(slide, grid, gpu_encoder, torch.device("cuda"))
        tiles, _ = reader.read_tiles(np.arange(len(grid)))
        assert max_diff(tiles.cpu().numpy(), cpu_tiles(slide, grid)) <= 1, reader.stats
