"""Harmonisation: the reference choice, its saved form, and what it does to the tiles of a slide."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.encoders import create_encoder
from napari_wsirobust.features import FeatureCache, cache_key, run_to_completion
from napari_wsirobust.io import open_slide
from napari_wsirobust.stain import (
    Harmonisation,
    HarmonisationError,
    choose_reference,
    estimate_slide_profile,
    reference_for_slides,
)
from napari_wsirobust.tiling import Scope, TilingConfig, detect_tissue, make_tile_grid, read_tile


@pytest.fixture(scope="module")
def same_tissue(same_tissue_three_scanners: dict[str, Path]) -> dict[str, Path]:
    return same_tissue_three_scanners


@pytest.fixture(scope="module")
def profiles(same_tissue: dict[str, Path]) -> dict[str, object]:
    return {s: estimate_slide_profile(str(p)) for s, p in same_tissue.items()}


def test_reference_is_the_softest_site_with_the_lowest_jpeg_quality(profiles) -> None:  # type: ignore[no-untyped-def]
    auto = choose_reference(profiles)
    assert auto.site == "C"  # the softest focus: blur can be added, not removed
    assert auto.reference.jpeg_quality == min(p.jpeg_quality for p in profiles.values()) == 65
    named = choose_reference(profiles, "A")
    assert named.site == "A" and named.reference.hematoxylin_od == profiles["A"].hematoxylin_od
    assert named.reference.jpeg_quality == 65  # compression can be added, not removed
    with pytest.raises(HarmonisationError, match="no site 'Z'.*A, B, C"):
        choose_reference(profiles, "Z")
    with pytest.raises(HarmonisationError, match="no site profiles"):
        choose_reference({})


def test_reference_for_slides_profiles_each_site(same_tissue: dict[str, Path]) -> None:
    chosen = reference_for_slides({s: [str(p)] for s, p in same_tissue.items()}, "auto")
    assert chosen.site == "C"
    with pytest.raises(HarmonisationError, match=r"missing.tiff \(site B\)"):
        reference_for_slides(
            {"A": [str(same_tissue["A"])], "B": [str(same_tissue["B"].with_name("missing.tiff"))]}
        )


def test_saved_form_round_trips_and_bad_entries_are_refused(profiles) -> None:  # type: ignore[no-untyped-def]
    h = choose_reference(profiles)
    again = Harmonisation.from_dict(h.to_dict())
    assert again == h and again.identity() == h.identity()
    other = Harmonisation(replace(h.reference, sharpness=h.reference.sharpness + 1), h.site)
    assert other.identity() != h.identity()  # a different reference is a different cache entry
    with pytest.raises(HarmonisationError, match="no 'reference'"):
        Harmonisation.from_dict({"site": "C"})
    broken = h.to_dict()
    del broken["reference"]["eosin_od"]
    with pytest.raises(HarmonisationError, match="lacks eosin_od"):
        Harmonisation.from_dict(broken)
    with pytest.raises(HarmonisationError, match="newer than this plugin"):
        Harmonisation.from_dict({**h.to_dict(), "algorithm": 99})
    bad = h.to_dict()
    bad["reference"]["hematoxylin_od"] = [1.0, 2.0]
    with pytest.raises(HarmonisationError, match="malformed"):
        Harmonisation.from_dict(bad)


def test_harmonised_tiles_of_every_scanner_look_like_the_reference_scanner(
    same_tissue: dict[str, Path], profiles
) -> None:  # type: ignore[no-untyped-def]
    h = choose_reference(profiles)
    tiles = {}
    for scanner, path in same_tissue.items():
        with open_slide(path) as slide:
            grid = make_tile_grid(slide, TilingConfig(), Scope.whole(), detect_tissue(slide))
            raw = [read_tile(slide, grid, i) for i in range(len(grid))]
            transform = h.for_slide(slide)
            tiles[scanner] = (np.stack(raw), np.stack([transform(t, 0, 0) for t in raw]))
    real_c = tiles["C"][0].astype(float)
    for scanner in "AB":
        raw, harmonised = tiles[scanner]
        before = np.abs(raw.astype(float) - real_c).mean()
        after = np.abs(harmonised.astype(float) - real_c).mean()
        assert after < 0.5 * before, (scanner, before, after)  # same tissue, now rendered like C
        # the blur added brings the sharp scanner's detail down towards C's
        detail = [np.var(np.diff(x.astype(float), axis=2)) for x in (raw, harmonised, real_c)]
        assert detail[1] < detail[0] and abs(detail[1] - detail[2]) < abs(detail[0] - detail[2])


def test_harmonised_features_are_cached_apart_and_do_not_depend_on_the_scope(
    same_tissue: dict[str, Path], profiles, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    h = choose_reference(profiles)
    encoder = create_encoder("effnet-lite0-imagenet", random_init=True)
    with open_slide(same_tissue["A"]) as slide:
        tissue = detect_tissue(slide)
        whole = make_tile_grid(slide, TilingConfig(), Scope.whole(), tissue)
        part = whole.subset(np.arange(len(whole)) % 2 == 0)
        assert cache_key(slide, whole, encoder) != cache_key(slide, whole, encoder, harmonise=h)
        # two separate caches: the half scope and the whole slide are embedded independently
        half = run_to_completion(FeatureCache(tmp_path / "a").embed(slide, part, encoder, harmonise=h))
        full = run_to_completion(FeatureCache(tmp_path / "b").embed(slide, whole, encoder, harmonise=h))
        plain = run_to_completion(FeatureCache(tmp_path / "b").embed(slide, whole, encoder))
    np.testing.assert_allclose(full[::2], half, atol=1e-4)  # a tile's features do not depend on the scope
    assert not np.allclose(full, plain, atol=1e-3)  # the scanner-A tiles were re-rendered first
    with open_slide(same_tissue["A"]) as slide, pytest.raises(ValueError, match="views of harmonised"):
        run_to_completion(FeatureCache(tmp_path / "c").embed(slide, whole, encoder, object(), harmonise=h))
