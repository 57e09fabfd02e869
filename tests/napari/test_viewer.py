"""napari integration: the reader through viewer.open, sample data, the Slide info widget."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.io import MissingMPPWarning  # noqa: E402
from napari_wsirobust.widgets.slide_info import SlideInfoWidget  # noqa: E402

pytestmark = pytest.mark.napari


def _pixel_edges(layer) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of the outer pixel edges of a 2-D layer (napari's extent is centre-based)."""
    shape = np.asarray((layer.data[0] if layer.multiscale else layer.data).shape[:2])
    scale, translate = np.asarray(layer.scale), np.asarray(layer.translate)
    return translate - scale / 2, translate + (shape - 0.5) * scale


def test_viewer_open_generated_slide_is_multiscale_in_um(make_napari_viewer, tumour_slide: Path) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open(str(tumour_slide), plugin="napari-wsirobust")
    assert len(layers) == 1
    layer = layers[0]
    assert layer.multiscale and layer.rgb
    assert len(layer.data) >= 3
    assert tuple(layer.scale) == pytest.approx((0.5, 0.5))
    assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert layer.metadata["wsirobust"]["mpp_source"] == "file"
    # the world extent is the slide's physical size: 1024 x 768 px at 0.5 µm/px
    low, high = _pixel_edges(layer)
    assert high - low == pytest.approx((384.0, 512.0))


def test_viewer_open_cmu_svs(make_napari_viewer, shared_slides: Path) -> None:
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(shared_slides / "cmu-1-small-region.svs"), plugin="napari-wsirobust")
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
    assert layer.metadata["wsirobust"]["vendor"] == "aperio"


def test_broken_file_reports_and_viewer_keeps_running(make_napari_viewer, shared_slides: Path) -> None:
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match=r"broken\.svs") as info:
        viewer.open(str(shared_slides / "broken.svs"), plugin="napari-wsirobust")
    assert "not a readable TIFF-based slide" in str(info.value) or "not a readable" in repr(
        info.value.__cause__
    )
    layer = viewer.add_image(np.zeros((8, 8)))
    assert layer in viewer.layers


@pytest.mark.parametrize("key", ["synthetic_normal", "synthetic_tumour", "synthetic_tumour_scanner_c"])
def test_sample_data_contributions_load(make_napari_viewer, key: str) -> None:
    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-wsirobust", key)
    slide_layer = layers[0]
    assert slide_layer.multiscale and slide_layer.rgb
    assert tuple(slide_layer.scale) == pytest.approx((0.5, 0.5))
    if "tumour" in key:
        truth = layers[1]
        assert truth.data.any()
        # the ground truth covers exactly the slide's physical extent
        slide_low, slide_high = _pixel_edges(slide_layer)
        truth_low, truth_high = _pixel_edges(truth)
        np.testing.assert_allclose(truth_low, slide_low, atol=1e-6)  # same top-left corner
        cell = np.asarray(truth.scale)
        assert (truth_high >= slide_high - 1e-6).all() and (truth_high < slide_high + cell).all()


def test_slide_info_widget_shows_metadata_and_applies_mpp(
    make_napari_viewer, shared_slides: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    viewer = make_napari_viewer()
    widget = SlideInfoWidget(viewer)
    errors: list[str] = []
    monkeypatch.setattr("napari_wsirobust.widgets.slide_info.show_error", errors.append)
    widget._file_edit.value = shared_slides / "broken.svs"
    widget._on_open_clicked()
    assert errors and "broken.svs" in errors[0]
    assert len(viewer.layers) == 0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingMPPWarning)
        widget._file_edit.value = shared_slides / "kidney-48-5.tif"
        widget._on_open_clicked()
    assert len(viewer.layers) == 1
    assert "MPP: unknown (missing)" in widget._info_edit.value
    widget._mpp_edit.value = 0.25
    widget._on_apply_mpp_clicked()
    layer = viewer.layers[0]
    assert tuple(layer.scale) == pytest.approx((0.25, 0.25))
    assert layer.metadata["wsirobust"]["mpp_source"] == "override"
    assert "0.25 x 0.25 µm/px (override)" in widget._info_edit.value


def test_compute_packages_do_not_import_qt() -> None:
    modules = [
        "errors", "_vispy", "io", "synthetic", "_reader", "tiling", "stain", "encoders", "cli", "features",
        "cohort", "mil", "analysis", "diagnostics", "benchmarking",
    ]  # fmt: skip
    code = (
        "import sys, " + ", ".join(f"napari_wsirobust.{m}" for m in modules) + "; "
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'napari', 'magicgui') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_is_valid() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "napari-wsirobust", "--imports"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_slide_info_colour_choice_reopens_the_layer_in_srgb(make_napari_viewer, profiled_slide: Path) -> None:
    viewer = make_napari_viewer()
    widget = SlideInfoWidget(viewer)
    widget._file_edit.value = profiled_slide
    widget._on_open_clicked()
    (layer,) = viewer.layers
    assert "Colour profile: wsirobust test gamma" in widget._info_edit.value
    assert "Colour: as scanned" in widget._info_edit.value
    before = np.asarray(layer.data[-1][:64, :64])
    widget._colour_edit.value = "srgb"
    assert viewer.layers[0] is layer
    assert layer.metadata["wsirobust"]["color"] == "srgb"
    assert "Colour: sRGB (embedded profile applied)" in widget._info_edit.value
    after = np.asarray(layer.data[-1][:64, :64])
    assert after.mean() > before.mean() + 5  # the gamma-1.0 profile brightens mid-tones


def test_viewer_opens_a_dicom_folder_as_multiscale_um_layer(make_napari_viewer, dicom_slide: Path) -> None:
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(dicom_slide), plugin="napari-wsirobust")
    assert layer.multiscale and len(layer.data) == 5
    assert tuple(layer.scale) == pytest.approx((0.499, 0.499))
    assert layer.metadata["wsirobust"]["backend"] == "wsidicom"
    assert "Backend: wsidicom" in SlideInfoWidget(viewer)._info_edit.value


def test_viewer_shows_a_damaged_slide_and_refuses_a_truncated_one_clearly(
    make_napari_viewer, shared_slides: Path, damaged_copy, tmp_path: Path
) -> None:
    from napari_wsirobust.io import DamagedTileWarning

    viewer = make_napari_viewer()
    damaged = damaged_copy(shared_slides / "cmu-1-small-region.svs", [5, 6])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (layer,) = viewer.open(str(damaged), plugin="napari-wsirobust")
        tile = np.asarray(layer.data[0:240, 1200:1440]) if not layer.multiscale else None
    assert tile is not None and (tile == 255).all()  # the damaged tile is blank glass
    assert any(issubclass(w.category, DamagedTileWarning) for w in caught)
    truncated = tmp_path / "incomplete.svs"
    truncated.write_bytes((shared_slides / "cmu-1-small-region.svs").read_bytes()[:500_000])
    with pytest.raises(Exception, match=r"incomplete\.svs: truncated: ends at 500,000 bytes"):
        viewer.open(str(truncated), plugin="napari-wsirobust")
    assert layer in viewer.layers and len(viewer.layers) == 1
