"""The demo's analysis path: a slide analysed with the bundled model shows visible overlays."""

from __future__ import annotations

from pathlib import Path

import pytest

napari = pytest.importorskip("napari")

from napari_wsirobust.demo import open_and_analyse, overlay_change_fraction  # noqa: E402

pytestmark = pytest.mark.napari


def test_demo_analysis_draws_the_heatmap_over_the_tissue(make_napari_viewer, analysis_slide: Path) -> None:
    viewer = make_napari_viewer(show=True)
    analyse = open_and_analyse(viewer, str(analysis_slide), "demo slide")
    result = analyse.current_result()
    assert result.predicted_label == "tumour"
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "demo slide" and "demo slide attention" in names and "demo slide top 8 tiles" in names
    viewer.reset_view()
    changed = overlay_change_fraction(viewer)
    assert changed > 0.05  # the heatmap covers the tissue tiles, a good part of the canvas
    shot = viewer.screenshot(canvas_only=True, flash=False)
    # the attention colormap's warm end (orange/red) is on screen; the synthetic H&E itself has no pixel
    # this red (0 of the slide's 3.1 M level-0 pixels pass the same test)
    r, g, b = (shot[..., i].astype(int) for i in range(3))
    warm = (r > 150) & (r - b > 60) & (r - g > 60)
    assert warm.mean() > 0.005, warm.mean()
