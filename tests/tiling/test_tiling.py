"""Tissue detection and tile grids at a physical resolution."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from skimage.measure import points_in_poly

from napari_wsirobust.io import MissingMPPWarning, open_slide
from napari_wsirobust.synthetic import (
    SyntheticSlideSpec,
    TissueSpec,
    load_ground_truth,
    write_synthetic_slide,
)
from napari_wsirobust.tiling import (
    MissingMPPError,
    Scope,
    TilingConfig,
    detect_tissue,
    make_tile_grid,
    read_tile,
)


def test_tissue_found_on_cmu(shared_slides: Path) -> None:
    slide = open_slide(shared_slides / "cmu-1-small-region.svs")
    tissue = detect_tissue(slide)
    assert 0.2 < tissue.tissue_fraction < 0.6
    overview = slide.levels[0][::16, ::16].compute()[: tissue.mask.shape[0], : tissue.mask.shape[1]]
    brightness = overview.mean(axis=-1)
    assert brightness[tissue.mask].mean() < brightness[~tissue.mask].mean() - 40


def test_almost_no_tissue_on_kidney_strip(shared_slides: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / "kidney-48-5.tif")
    assert detect_tissue(slide).tissue_fraction < 0.01


@pytest.mark.parametrize("scanner", ["A", "B", "C"])
def test_mask_agrees_with_generator_ground_truth(tmp_path: Path, scanner: str) -> None:
    """IoU >= 0.85 against the generator's tissue mask. Both masks are on 8 µm cells; the
    generator's tissue edge is anti-aliased over about one cell and the detector closes and fills
    small holes, so they may disagree on the one-cell rim of every piece of tissue. For these
    slides that rim is 5-8 % of the tissue (measured IoU 0.93-0.95), so 0.85 leaves margin for the
    blurriest, faintest profile while still failing a mask that is off by a few cells."""
    spec = SyntheticSlideSpec.make(TissueSpec(seed=31, tumour=True, width=1536, height=1024), scanner)
    path = write_synthetic_slide(spec, tmp_path / f"s_{scanner}.tiff").slide_path
    tissue = detect_tissue(open_slide(path))
    truth = load_ground_truth(path)
    h, w = tissue.mask.shape
    ys = ((np.arange(h) + 0.5) * tissue.downsample[1] / truth.step_px).astype(int)
    xs = ((np.arange(w) + 0.5) * tissue.downsample[0] / truth.step_px).astype(int)
    gt = truth.tissue[np.ix_(ys.clip(0, truth.tissue.shape[0] - 1), xs.clip(0, truth.tissue.shape[1] - 1))]
    iou = (gt & tissue.mask).sum() / (gt | tissue.mask).sum()
    assert iou >= 0.85, iou


def _gradient_pyramid(path: Path, width: int, height: int, mpp: float, levels: int) -> None:
    """A pyramidal TIFF whose red channel is x/width*255 and green y/height*255 at every level
    (each level sampled at its own pixel centres), so a tile's colour tells where it came from."""

    def level_image(k: int) -> np.ndarray:
        f = 2**k
        w, h = width // f, height // f
        x = (np.arange(w) + 0.5) * f / width * 255
        y = (np.arange(h) + 0.5) * f / height * 255
        img = np.zeros((h, w, 3), np.uint8)
        img[..., 0] = np.rint(x)[None, :]
        img[..., 1] = np.rint(y)[:, None]
        img[..., 2] = 128
        return img

    res = (1e4 / mpp, 1e4 / mpp)
    with tifffile.TiffWriter(path) as tif:
        tif.write(level_image(0), tile=(256, 256), photometric="rgb", subifds=levels - 1,
                  resolution=res, resolutionunit="CENTIMETER", metadata=None)  # fmt: skip
        for k in range(1, levels):
            tif.write(level_image(k), tile=(256, 256), photometric="rgb", subfiletype=1,
                      resolution=(res[0] / 2**k, res[1] / 2**k), resolutionunit="CENTIMETER",
                      metadata=None)  # fmt: skip


@pytest.mark.parametrize(
    ("mpp", "target", "expected_level"),
    [(0.3, 0.5, 0), (0.25, 1.0, 2), (0.22, 0.5, 1)],
    ids=["0.3->0.5 from level 0", "0.25->1.0 from level 2", "0.22->0.5 from level 1"],
)
def test_tiles_at_target_resolution_without_matching_level(
    tmp_path: Path, mpp: float, target: float, expected_level: int
) -> None:
    width, height = 3000, 2000
    path = tmp_path / "gradient.tif"
    _gradient_pyramid(path, width, height, mpp, levels=3)
    slide = open_slide(path)
    config = TilingConfig(tile_size=64, target_mpp=target, min_tissue_fraction=0.0)
    grid = make_tile_grid(slide, config)
    size = 64 * target / mpp  # tile size in level-0 pixels, not an integer in general
    assert grid.tile_size_level0 == pytest.approx((size, size))
    assert grid.read_level == expected_level
    assert grid.grid_shape == (int((height - size) // size) + 1, int((width - size) // size) + 1)
    for i in (0, len(grid) // 2, len(grid) - 1):
        np.testing.assert_allclose(grid.x0[i], grid.cols[i] * size)
        np.testing.assert_allclose(grid.y0[i], grid.rows[i] * size)
        tile = read_tile(slide, grid, i).astype(np.float64)
        assert tile.shape == (64, 64, 3)
        # the tile's colour gradient spans exactly its physical extent
        x_left = (grid.x0[i] + size / 128) / width * 255
        x_right = (grid.x0[i] + size - size / 128) / width * 255
        y_top = (grid.y0[i] + size / 128) / height * 255
        assert tile[:, 0, 0].mean() == pytest.approx(x_left, abs=1.5)
        assert tile[:, -1, 0].mean() == pytest.approx(x_right, abs=1.5)
        assert tile[0, :, 1].mean() == pytest.approx(y_top, abs=1.5)
    # µm coordinates follow napari's pixel convention (level-0 pixel k centred at k * mpp)
    np.testing.assert_allclose(grid.coords_um[:, 1], (grid.x0 - 0.5) * mpp)


def test_polygon_scope_returns_only_tiles_inside(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide)
    config = TilingConfig(tile_size=32, min_tissue_fraction=0.0)
    whole = make_tile_grid(slide, config)
    triangle = np.array([[20.0, 30.0], [360.0, 60.0], [200.0, 480.0]])  # (y, x) µm
    grid = make_tile_grid(slide, config, Scope.polygons([triangle]))
    assert 0 < len(grid) < len(whole)
    inside_all = points_in_poly(whole.centres_um[:, ::-1], triangle[:, ::-1])
    expected = {(r, c) for r, c, ok in zip(whole.rows, whole.cols, inside_all) if ok}
    assert {(r, c) for r, c in zip(grid.rows, grid.cols)} == expected
    assert points_in_poly(grid.centres_um[:, ::-1], triangle[:, ::-1]).all()


def test_rect_scope_shares_the_global_grid(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide)
    tissue = detect_tissue(slide)
    whole = make_tile_grid(slide, TilingConfig(), Scope.whole(), tissue)
    part = make_tile_grid(slide, TilingConfig(), Scope.rect(0, 0, 200, 250), tissue)
    assert 0 < len(part) < len(whole)
    lookup = {(r, c): (x, y) for r, c, x, y in zip(whole.rows, whole.cols, whole.x0, whole.y0)}
    for r, c, x, y in zip(part.rows, part.cols, part.x0, part.y0):
        assert lookup[(r, c)] == (x, y)
    assert (part.centres_um[:, 0] <= 200).all() and (part.centres_um[:, 1] <= 250).all()


def test_min_tissue_fraction_filters_background(tumour_slide: Path) -> None:
    slide = open_slide(tumour_slide)
    tissue = detect_tissue(slide)
    loose = make_tile_grid(slide, TilingConfig(min_tissue_fraction=0.0), tissue=tissue)
    strict = make_tile_grid(slide, TilingConfig(min_tissue_fraction=0.75), tissue=tissue)
    assert len(strict) < len(loose)
    assert (strict.tissue_fraction >= 0.75).all()


def test_tiling_without_mpp_is_refused_clearly(shared_slides: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        slide = open_slide(shared_slides / "kidney-48-5.tif")
    with pytest.raises(MissingMPPError, match="kidney-48-5.tif: has no pixel size"):
        make_tile_grid(slide)
    assert len(make_tile_grid(open_slide(shared_slides / "kidney-48-5.tif", mpp=0.5))) > 0


def test_invalid_configs_are_refused() -> None:
    with pytest.raises(ValueError, match="tile_size"):
        TilingConfig(tile_size=2)
    with pytest.raises(ValueError, match="polygons scope"):
        Scope.polygons([np.zeros((2, 2))])
    with pytest.raises(ValueError, match="scope kind"):
        Scope("viewport")


def test_pen_marks_and_black_ink_are_not_tissue(tumour_slide: Path) -> None:
    from napari_wsirobust.tiling.tissue import tissue_mask_from_rgb

    slide = open_slide(tumour_slide)
    overview = slide.levels[1].compute().copy()  # 512 x 384 at 1 µm/px
    clean, _ = tissue_mask_from_rgb(overview, pixel_area_um2=1.0)
    inked = overview.copy()
    inked[:, 40:70] = (40, 160, 70)  # green marker stroke across glass and tissue
    inked[300:330, :] = (30, 60, 190)  # blue marker stroke
    inked[100:140, 400:440] = (10, 10, 10)  # black ink blot
    mask, _ = tissue_mask_from_rgb(inked, pixel_area_um2=1.0)
    assert not mask[:, 45:65].any() and not mask[305:325, :].any()
    assert not mask[105:135, 405:435].any()
    untouched = np.ones_like(clean)
    untouched[:, 30:80] = untouched[290:340, :] = untouched[90:150, 390:450] = False
    agreement = (mask[untouched] == clean[untouched]).mean()
    assert clean.mean() > 0.3 and agreement > 0.97
