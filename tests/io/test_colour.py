"""Colour profiles: as scanned, or the embedded ICC profile applied to every tile (sRGB)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from napari_wsirobust.errors import InputError
from napari_wsirobust.io import open_slide


def test_srgb_applies_the_embedded_profile_to_every_tile(profiled_slide: Path) -> None:
    scanned = open_slide(profiled_slide)
    srgb = open_slide(profiled_slide, color="srgb")
    assert scanned.metadata.color == "as-scanned" and srgb.metadata.color == "srgb"
    assert srgb.metadata.icc_profile == "wsirobust test gamma"
    raw, managed = np.asarray(scanned.arrays[0]), np.asarray(srgb.arrays[0])
    icc = ImageCms.ImageCmsProfile(io.BytesIO(_embedded(profiled_slide)))
    transform = ImageCms.buildTransform(icc, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    expected = np.asarray(ImageCms.applyTransform(Image.fromarray(raw), transform))
    np.testing.assert_array_equal(managed, expected)
    assert np.abs(managed.astype(int) - raw).mean() > 10  # a strong profile: visibly different
    assert managed[raw < 128].mean() > raw[raw < 128].mean()  # linear data: mid-tones brighten
    region = srgb.read_region((300, 200), 0, (100, 80))
    np.testing.assert_array_equal(region, expected[200:280, 300:400])
    _, kwargs, _ = srgb.to_layer_data()[0]
    assert kwargs["metadata"]["wsirobust"]["color"] == "srgb"


def test_srgb_on_a_slide_without_a_profile_is_as_scanned_and_says_so(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide, color="srgb")
    assert slide.metadata.icc_profile is None
    assert any("no embedded colour profile" in n for n in slide.metadata.notes)
    np.testing.assert_array_equal(
        np.asarray(slide.arrays[-1]), np.asarray(open_slide(tumour_slide).arrays[-1])
    )


def test_unknown_colour_mode_is_refused(tumour_slide: Path) -> None:
    with pytest.raises(InputError, match="color must be one of as-scanned, srgb"):
        open_slide(tumour_slide, color="p3")


def test_colour_mode_is_part_of_the_feature_cache_key(profiled_slide: Path) -> None:
    from napari_wsirobust.encoders import create_encoder
    from napari_wsirobust.features import cache_key
    from napari_wsirobust.tiling import Scope, TilingConfig, make_tile_grid

    encoder = create_encoder("effnet-lite0-imagenet")
    keys = set()
    for colour in ("as-scanned", "srgb"):
        slide = open_slide(profiled_slide, color=colour)
        keys.add(cache_key(slide, make_tile_grid(slide, TilingConfig(), Scope.whole()), encoder))
    assert len(keys) == 2


def _embedded(path: Path) -> bytes:
    import tifffile

    with tifffile.TiffFile(path) as tf:
        return bytes(tf.pages[0].tags[34675].value)
