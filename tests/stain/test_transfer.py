"""Scanner swap: to its own profile ~ identity; to another profile towards that scanner's rendering
of the very same tissue (the synthetic generator renders one tissue through each scanner)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsirobust.io import open_slide
from napari_wsirobust.stain import (
    angle_degrees,
    estimate_slide_profile,
    estimate_stain_profile,
    transfer_tile,
)
from napari_wsirobust.stain.transfer import jpeg_roundtrip
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[np.ndarray, object]]:
    """Scanner -> (level-0 RGB of the same tissue, its estimated profile)."""
    folder = tmp_path_factory.mktemp("swap")
    out = {}
    for scanner in "ABC":
        path = folder / f"{scanner}.tiff"
        write_synthetic_slide(
            SyntheticSlideSpec.make(TissueSpec(seed=3, tumour=True, width=1024, height=768), scanner), path
        )
        slide = open_slide(path)
        out[scanner] = (
            np.asarray(slide.read_region((0, 0), 0, slide.dimensions))[..., :3],
            estimate_slide_profile(str(path)),
        )
    return out


def test_swap_to_its_own_profile_is_close_to_identity(rendered) -> None:  # type: ignore[no-untyped-def]
    image, profile = rendered["A"]
    same = transfer_tile(image, profile, profile)
    assert np.abs(same.astype(float) - image).mean() < 1.5  # grey levels


@pytest.mark.parametrize("target", ["B", "C"])
def test_swap_to_another_profile_moves_towards_that_scanner(rendered, target: str) -> None:  # type: ignore[no-untyped-def]
    image, source = rendered["A"]
    real, profile = rendered[target]
    moved = transfer_tile(image, source, profile)
    before = np.abs(image.astype(float) - real).mean()
    after = np.abs(moved.astype(float) - real).mean()
    assert after < 0.4 * before  # measured: 16.3 -> 4.3 (B), 14.3 -> 4.3 (C) grey levels per pixel
    np.testing.assert_allclose(moved.reshape(-1, 3).mean(0), real.reshape(-1, 3).mean(0), atol=4.0)
    re_estimated = estimate_stain_profile(moved)
    assert angle_degrees(re_estimated.hematoxylin_od, profile.hematoxylin_od) < 1.0
    assert angle_degrees(re_estimated.hematoxylin_od, source.hematoxylin_od) > 3.0


def test_blur_and_jpeg_options(rendered) -> None:  # type: ignore[no-untyped-def]
    image, profile = rendered["A"]
    tile = image[:224, :224]
    sharp = transfer_tile(tile, profile, profile)
    blurred = transfer_tile(tile, profile, profile, blur_sigma_px=1.5)
    assert np.var(np.diff(blurred.astype(float), axis=1)) < 0.5 * np.var(np.diff(sharp.astype(float), axis=1))
    low = jpeg_roundtrip(tile, 20)
    assert low.shape == tile.shape and 0 < np.abs(low.astype(float) - tile).mean() < 20
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(tile, 0)
    with pytest.raises(ValueError, match="RGB"):
        transfer_tile(tile[..., 0], profile, profile)


def test_blur_matching_brings_the_swap_closer_to_the_blurrier_scanner(rendered) -> None:  # type: ignore[no-untyped-def]
    from napari_wsirobust.stain import matching_blur_sigma

    image, source = rendered["A"]  # scanner A: no blur
    assert matching_blur_sigma(image[:448, :448], source, source) == 0.0
    real, target = rendered["C"]  # scanner C: 0.6 µm blur = 1.2 px at 0.5 µm/px
    sigma = matching_blur_sigma(image[:448, :448], source, target)
    assert 0.3 < sigma < 2.0  # measured 0.69 px: noise and JPEG keep some high frequencies
    plain = transfer_tile(image, source, target, jpeg_quality=target.jpeg_quality)
    blurred = transfer_tile(image, source, target, blur_sigma_px=sigma, jpeg_quality=target.jpeg_quality)
    # measured 4.4 -> 3.3 grey levels per pixel against the real scanner-C rendering
    assert np.abs(blurred.astype(float) - real).mean() < 0.9 * np.abs(plain.astype(float) - real).mean()


def _per_channel_blur_sigma(tiles: np.ndarray, source, target, max_sigma: float = 3.0) -> float:  # type: ignore[no-untyped-def]
    """The bisection as first written: each channel blurred, then their grey mean's sharpness."""
    from scipy import ndimage

    from napari_wsirobust.stain.profile import tissue_pixels, tissue_sharpness

    moved = transfer_tile(tiles, source, target).astype(np.float64)
    tissue = tissue_pixels(moved, target.background_rgb)
    if not tissue.any() or tissue_sharpness(moved, tissue) <= target.sharpness:
        return 0.0

    def sharpness(sigma: float) -> float:
        blurred = np.stack([ndimage.gaussian_filter(moved[..., c], sigma) for c in range(3)], axis=-1)
        return tissue_sharpness(blurred, tissue)

    lo, hi = 0.0, max_sigma
    if sharpness(hi) > target.sharpness:
        return hi
    for _ in range(14):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sharpness(mid) > target.sharpness else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize(("source_site", "target_site"), [("A", "C"), ("B", "C"), ("A", "B"), ("C", "A")])
def test_blur_of_the_grey_image_gives_the_per_channel_bisections_sigma(  # type: ignore[no-untyped-def]
    rendered, source_site: str, target_site: str
) -> None:
    from napari_wsirobust.stain import matching_blur_sigma

    for crop in (np.s_[:448, :448], np.s_[224:, 320:], np.s_[:, :]):
        image, source = rendered[source_site]
        _, target = rendered[target_site]
        expected = _per_channel_blur_sigma(image[crop], source, target)
        assert matching_blur_sigma(image[crop], source, target) == expected
