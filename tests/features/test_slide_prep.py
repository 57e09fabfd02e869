"""SlidePrepStore: tissue masks and harmonisation plans computed once per slide, kept on disk, the
same as computing them afresh; concurrent callers share one computation."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.features import SlidePrepStore, forget_in_memory
from napari_wsirobust.features import slide_prep as slide_prep_module
from napari_wsirobust.io import open_slide
from napari_wsirobust.mil import TrainedHead
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.tiling import TissueMaskConfig, detect_tissue


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[SlidePrepStore]:
    forget_in_memory()
    yield SlidePrepStore(tmp_path / "slides")
    forget_in_memory()


def _harmonisation():  # type: ignore[no-untyped-def]
    return TrainedHead.load(demo_model_dir()).harmonisation()


def test_tissue_and_plan_equal_a_fresh_computation_and_come_back_from_disk(
    analysis_slide: Path, store: SlidePrepStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    harmonise = _harmonisation()
    with open_slide(analysis_slide) as slide:
        fresh_tissue, fresh_plan = detect_tissue(slide), harmonise.plan_for(slide)
        assert store.state(store.tissue_key(slide)) == "missing"
        tissue, plan = store.tissue(slide), store.plan(slide, harmonise)
        assert store.state(store.tissue_key(slide)) == "ready"
        assert store.state(store.plan_key(slide, harmonise)) == "ready"
    np.testing.assert_array_equal(tissue.mask, fresh_tissue.mask)
    assert (tissue.downsample, tissue.saturation_threshold, tissue.glass_rgb) == (
        fresh_tissue.downsample,
        fresh_tissue.saturation_threshold,
        fresh_tissue.glass_rgb,
    )
    assert plan == fresh_plan
    # a new process: nothing in memory, and nothing may be computed again
    forget_in_memory()
    monkeypatch.setattr(slide_prep_module, "detect_tissue", _must_not_run)
    monkeypatch.setattr(type(harmonise), "plan_for", _must_not_run)
    with open_slide(analysis_slide) as slide:
        assert store.state(store.plan_key(slide, harmonise)) == "ready"
        again_tissue, again_plan = store.tissue(slide), store.plan(slide, harmonise)
    np.testing.assert_array_equal(again_tissue.mask, fresh_tissue.mask)
    assert again_tissue.glass_rgb == fresh_tissue.glass_rgb
    assert again_plan == fresh_plan


def test_keys_follow_what_changes_the_result(analysis_slide: Path, store: SlidePrepStore) -> None:
    harmonise = _harmonisation()
    with open_slide(analysis_slide) as slide, open_slide(analysis_slide, mpp=0.25) as finer:
        with open_slide(analysis_slide, color="srgb") as srgb:
            keys = {
                store.tissue_key(slide),
                store.tissue_key(finer),
                store.tissue_key(srgb),
                store.tissue_key(slide, TissueMaskConfig(min_od=0.1)),
                store.plan_key(slide, harmonise),
                store.plan_key(finer, harmonise),
            }
        assert store.tissue_key(slide) == store.tissue_key(slide)
    assert len(keys) == 6


def test_a_damaged_entry_is_discarded_and_rebuilt(analysis_slide: Path, store: SlidePrepStore) -> None:
    harmonise = _harmonisation()
    with open_slide(analysis_slide) as slide:
        expected_mask, expected_plan = store.tissue(slide).mask, store.plan(slide, harmonise)
        entries = sorted(store.root.rglob("*.*"))
        assert {p.suffix for p in entries} == {".npz", ".json"}
        for entry in entries:
            entry.write_bytes(b"\x00garbage")
        forget_in_memory()
        with pytest.warns(UserWarning, match="discarding damaged slide cache entry"):
            mask = store.tissue(slide).mask
        with pytest.warns(UserWarning, match="discarding damaged slide cache entry"):
            plan = store.plan(slide, harmonise)
    np.testing.assert_array_equal(mask, expected_mask)
    assert plan == expected_plan


def test_concurrent_callers_share_one_computation(
    analysis_slide: Path, store: SlidePrepStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    release = threading.Event()

    def slow_detect(slide, config):  # type: ignore[no-untyped-def]
        calls.append(1)
        release.wait(10)
        return detect_tissue(slide, config)

    monkeypatch.setattr(slide_prep_module, "detect_tissue", slow_detect)
    results: list[np.ndarray] = []
    with open_slide(analysis_slide) as slide:
        key = store.tissue_key(slide)
        ask = lambda: results.append(store.tissue(slide).mask)  # noqa: E731
        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while store.state(key) != "running" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert store.state(key) == "running"
        release.set()
        for t in threads:
            t.join(10)
        assert store.state(key) == "ready"
    assert len(calls) == 1 and len(results) == 3
    assert all(np.array_equal(r, results[0]) for r in results)


def test_a_failed_computation_reaches_every_waiter_and_is_retried_later(
    analysis_slide: Path, store: SlidePrepStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slide_prep_module, "detect_tissue", _must_not_run)
    with open_slide(analysis_slide) as slide:
        with pytest.raises(AssertionError, match="must not run"):
            store.tissue(slide)
        assert store.state(store.tissue_key(slide)) == "missing"
        monkeypatch.setattr(slide_prep_module, "detect_tissue", detect_tissue)
        assert store.tissue(slide).mask.any()


def test_a_read_only_cache_still_gives_the_result(
    analysis_slide: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    forget_in_memory()
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    store = SlidePrepStore(blocked / "slides")  # cannot be created: its parent is a file
    with open_slide(analysis_slide) as slide, pytest.warns(UserWarning, match="cannot keep"):
        assert store.tissue(slide).mask.any()
    forget_in_memory()


def _must_not_run(*_args: object, **_kwargs: object) -> None:
    raise AssertionError("must not run: the entry is on disk")
