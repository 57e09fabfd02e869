"""Embedding pipeline, feature cache, HDF5 interchange and cohort extraction."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from napari_wsirobust.cli import main as cli_main
from napari_wsirobust.encoders import create_encoder
from napari_wsirobust.features import (
    FeatureCache,
    FeatureSet,
    cache_key,
    embed_batch,
    embed_tiles,
    read_feature_h5,
    run_to_completion,
    select_device,
    write_feature_h5,
)
from napari_wsirobust.features import pipeline as pipeline_module
from napari_wsirobust.io import open_slide
from napari_wsirobust.synthetic import read_cohort_csv
from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid, read_tile


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("effnet-lite0-imagenet")


@pytest.fixture
def grid_and_slide(tumour_slide: Path):
    slide = open_slide(tumour_slide)
    grid = make_tile_grid(slide, TilingConfig(min_tissue_fraction=0.1), Scope.whole(), detect_tissue(slide))
    assert len(grid) >= 6
    return slide, grid


@pytest.fixture
def embed_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the tiles that actually go through the model."""
    calls: list[int] = []
    original = pipeline_module.embed_batch

    def counting(encoder, tiles, device):  # type: ignore[no-untyped-def]
        calls.append(len(tiles))
        return original(encoder, tiles, device)

    monkeypatch.setattr(pipeline_module, "embed_batch", counting)
    return calls


def test_device_selection_on_this_machine() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if (
        not torch.cuda.is_available()
        and getattr(torch.backends, "mps", None)
        and torch.backends.mps.is_available()
    ):
        expected = "mps"
    assert select_device().type == expected
    assert select_device("cpu").type == "cpu"


def test_pipeline_matches_direct_embedding_and_reports_progress(grid_and_slide, encoder) -> None:
    slide, grid = grid_and_slide
    gen = embed_tiles(slide, grid, encoder, batch_size=4, readers=2)
    progress = []
    while True:
        try:
            progress.append(next(gen))
        except StopIteration as stop:
            features = stop.value
            break
    assert [p.done for p in progress] == sorted({min(i + 4, len(grid)) for i in range(0, len(grid), 4)})
    assert progress[-1].fraction == 1.0
    tiles = np.stack([read_tile(slide, grid, i) for i in range(len(grid))])
    direct = embed_batch(encoder, tiles, torch.device("cpu"))
    np.testing.assert_allclose(features, direct, rtol=1e-4, atol=1e-4)


def test_cancel_stops_reading_and_releases_threads(grid_and_slide, encoder, embed_calls) -> None:
    slide, grid = grid_and_slide
    gen = embed_tiles(slide, grid, encoder, batch_size=2)
    first = next(gen)
    gen.close()  # what napari's worker.quit() amounts to
    assert first.done == 2 and sum(embed_calls) == 2


def test_wrong_tile_size_for_encoder_is_explained(grid_and_slide, encoder) -> None:
    slide, _ = grid_and_slide
    grid = make_tile_grid(slide, TilingConfig(tile_size=128, min_tissue_fraction=0.0))
    with pytest.raises(ValueError, match="expects 224 px"):
        run_to_completion(embed_tiles(slide, grid, encoder))


def test_cache_hit_miss_and_partial_reuse(tmp_path: Path, grid_and_slide, encoder, embed_calls) -> None:
    slide, grid = grid_and_slide
    cache = FeatureCache(tmp_path)
    part = grid.subset(np.arange(len(grid)) < 3)
    run_to_completion(cache.embed(slide, part, encoder))
    assert sum(embed_calls) == 3
    embed_calls.clear()
    whole = run_to_completion(cache.embed(slide, grid, encoder))
    assert sum(embed_calls) == len(grid) - 3  # only the tiles the cache lacked
    embed_calls.clear()
    again = run_to_completion(cache.embed(slide, grid, encoder))
    assert embed_calls == []  # hit
    np.testing.assert_array_equal(again, whole)
    # a changed parameter is a different key: never stale features
    other_grid = make_tile_grid(slide, TilingConfig(target_mpp=1.0, min_tissue_fraction=0.0))
    assert cache_key(slide, other_grid, encoder) != cache_key(slide, grid, encoder)
    random_encoder = create_encoder("effnet-lite0-imagenet", random_init=True)
    assert cache_key(slide, grid, random_encoder) != cache_key(slide, grid, encoder)
    override = open_slide(slide.path, mpp=0.25)
    assert cache_key(override, make_tile_grid(override), encoder) != cache_key(slide, grid, encoder)


def test_truncated_entry_is_detected_and_rebuilt(
    tmp_path: Path, grid_and_slide, encoder, embed_calls
) -> None:
    slide, grid = grid_and_slide
    cache = FeatureCache(tmp_path)
    first = run_to_completion(cache.embed(slide, grid, encoder))
    path = cache.path_for(cache_key(slide, grid, encoder))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a process killed mid-write
    embed_calls.clear()
    with pytest.warns(UserWarning, match="discarding damaged feature cache entry"):
        rebuilt = run_to_completion(cache.embed(slide, grid, encoder))
    assert sum(embed_calls) == len(grid)
    np.testing.assert_allclose(rebuilt, first, rtol=1e-5, atol=1e-5)
    assert read_feature_h5(path, require_complete=True).features.shape == first.shape
    # an entry without its completion flag counts as half-written too
    with h5py.File(path, "a") as f:
        del f.attrs["wsirobust_complete"]
    with pytest.warns(UserWarning):
        assert cache.load(cache_key(slide, grid, encoder)) is None


def test_h5_round_trip_and_clam_style_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    fs = FeatureSet(rng.normal(size=(5, 8)), np.arange(10).reshape(5, 2) * 448, np.arange(5), np.arange(5),
                    {"patch_size": 224, "patch_size_level0": 448.0})  # fmt: skip
    path = write_feature_h5(tmp_path / "a.h5", fs)
    back = read_feature_h5(path, require_complete=True)
    np.testing.assert_array_equal(back.features, fs.features)
    np.testing.assert_array_equal(back.coords, fs.coords)
    assert back.attrs["patch_size_level0"] == 448.0
    with h5py.File(path) as f:  # the layout other tools read
        assert f["features"].shape == (5, 8) and f["coords"].shape == (5, 2)
    clam = tmp_path / "clam.h5"
    with h5py.File(clam, "w") as f:
        f.create_dataset("features", data=rng.normal(size=(1, 3, 4)).astype(np.float32))
        coords = f.create_dataset("coords", data=np.array([[0, 0], [512, 0], [512, 1024]]))
        coords.attrs["patch_size_level0"] = 512
    other = read_feature_h5(clam)
    assert other.features.shape == (3, 4)
    assert other.rows.tolist() == [0, 0, 2] and other.cols.tolist() == [0, 1, 1]
    broken = tmp_path / "broken.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5 feature file"):
        read_feature_h5(broken)


@pytest.mark.slow
def test_extract_cli_on_cohort_with_local_cluster(
    tmp_path: Path, small_cohort: Path, shared_slides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = read_cohort_csv(small_cohort)[:6]
    subset = tmp_path / "subset.csv"
    with open(subset, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path"])
        writer.writeheader()
        writer.writerows({"path": r["path"]} for r in rows)
    cache = tmp_path / "cache"
    args = [
        "extract", str(subset), str(shared_slides / "broken.svs"), "--cache", str(cache),
        "--workers", "2", "--h5-dir", str(tmp_path / "h5"), "--min-tissue", "0.1",
    ]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(args) == 1  # one slide failed, the others were extracted
    out = capsys.readouterr().out
    assert "7 slide(s): 6 extracted, 1 failed" in out
    assert "failed    broken.svs: broken.svs: not a readable" in out
    assert len(list((tmp_path / "h5").glob("*.h5"))) == 6
    h5 = read_feature_h5(next((tmp_path / "h5").glob("*.h5")))
    assert h5.features.shape[1] == 1280 and len(h5.coords) == len(h5.features) > 0
    assert cli_main(args[:2] + args[3:]) == 0  # resumable: without the broken slide, all cached
    assert "6 slide(s): 6 cached" in capsys.readouterr().out
