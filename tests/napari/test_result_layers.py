"""In-place updates of result layers, step by step: unchanged properties are not re-set (each set makes
napari refresh the layer), changed ones are, and position changes in one step."""

from __future__ import annotations

import numpy as np
import pytest

napari = pytest.importorskip("napari")

from napari.layers import Image, Shapes  # noqa: E402

from napari_wsirobust.analysis import attention_colormap  # noqa: E402
from napari_wsirobust.widgets.result_layers import placed_translate, update_steps  # noqa: E402

pytestmark = pytest.mark.napari


def _emissions(layer, names: list[str]) -> dict[str, int]:
    counts = dict.fromkeys(names, 0)
    for name in names:
        getattr(layer.events, name).connect(lambda _e, name=name: counts.__setitem__(name, counts[name] + 1))
    return counts


def _image_kwargs(scale=(112.0, 112.0), translate=(10.0, 20.0), limits=(0.0, 1.0)) -> dict:
    return {
        "name": "slide attention",
        "scale": scale,
        "translate": translate,
        "colormap": attention_colormap(),
        "contrast_limits": limits,
    }


def test_image_update_changes_only_what_differs() -> None:
    kwargs = _image_kwargs()
    layer = Image(np.zeros((3, 4), np.float32), **kwargs)
    offset = np.array([100.0, 200.0])
    layer.translate = placed_translate(kwargs, offset)
    counts = _emissions(layer, ["translate", "scale", "name", "contrast_limits", "colormap", "data"])
    new = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    steps = update_steps(layer, new, _image_kwargs(), "image", placed_translate(kwargs, offset))
    assert len(steps) > 1  # spread over several event-loop turns
    for step in steps:
        step()
    np.testing.assert_array_equal(layer.data, new)
    assert counts == {"translate": 0, "scale": 0, "name": 0, "contrast_limits": 0, "colormap": 0, "data": 1}

    moved = _image_kwargs(scale=(56.0, 56.0), translate=(0.0, 5.0), limits=(0.0, 0.5))
    for step in update_steps(layer, new, moved, "image", placed_translate(moved, offset)):
        step()
    assert tuple(layer.translate) == pytest.approx((100.0, 205.0))
    assert tuple(layer.scale) == pytest.approx((56.0, 56.0))
    assert tuple(layer.contrast_limits) == pytest.approx((0.0, 0.5))
    assert counts["translate"] == 1 and counts["scale"] == 1 and counts["contrast_limits"] == 1


def test_shapes_update_replaces_rectangles_and_features() -> None:
    square = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    kwargs = {"name": "slide top 1 tiles", "shape_type": "rectangle", "features": {"rank": [1]}}
    layer = Shapes([square], **kwargs)
    layer.selected_data = {0}
    counts = _emissions(layer, ["translate", "name"])
    rects = [square + 5.0, square + 9.0]
    new_kwargs = {"name": "slide top 2 tiles", "features": {"rank": [1, 2], "attention": [0.7, 0.3]}}
    for step in update_steps(layer, rects, new_kwargs, "shapes", (0.0, 0.0)):
        step()
    assert len(layer.data) == 2 and layer.selected_data == set()
    np.testing.assert_allclose(layer.data[1], square + 9.0)
    assert list(layer.features["attention"]) == [0.7, 0.3]
    assert layer.name == "slide top 2 tiles"
    assert counts == {"translate": 0, "name": 1}
