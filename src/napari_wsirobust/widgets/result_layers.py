"""Putting result layers into a viewer, tagged so a re-run updates them in place (shared by the
Analyse and Robustness widgets), and the scope a user chose (visible region / shapes / whole)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..analysis import METADATA_KEY, visible_rect_um
from ..errors import InputError
from ..tiling import Scope
from .layer_geometry import shapes_to_polygons_um, slide_origin_um

SCOPES = ("visible region", "selected shapes", "whole slide")


def slide_choices(viewer: Any) -> list[tuple[str, Any]]:
    """(name, layer) of the viewer's slide layers, for a ComboBox."""
    from .slide_info import slide_layers

    return [(layer.name, layer) for layer in slide_layers(viewer)]


def slide_layer_for(viewer: Any, slide_path: str) -> Any:
    """The viewer's layer showing the slide at ``slide_path`` (None once it has been closed)."""
    from ..io import LAYER_METADATA_KEY
    from .slide_info import slide_layers

    for layer in slide_layers(viewer):
        if layer.metadata[LAYER_METADATA_KEY].get("path") == slide_path:
            return layer
    return None


def closed_slide_message(slide_path: str) -> str:
    """What a widget says when a run's slide was closed before its result arrived."""
    return (
        f"{Path(slide_path).name} was closed during the run, so its result is not shown "
        "(its tile features are cached: running it again is quick)."
    )


def drawn_layer_choices(viewer: Any, kinds: tuple[type, ...]) -> list[tuple[str, Any]]:
    """(name, layer) of the user's layers of ``kinds`` (the plugin's own result layers left out)."""
    return [
        (ly.name, ly) for ly in viewer.layers if isinstance(ly, kinds) and METADATA_KEY not in ly.metadata
    ]


def camera_of(viewer: Any) -> Any:
    """The viewer's camera (``viewer.scene.camera`` from napari 0.9, ``viewer.camera`` before)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def scope_for(viewer: Any, kind: str, slide_layer: Any, shapes_layer: Any = None) -> Scope:
    """The :class:`Scope` (µm relative to the slide's origin) for one of :data:`SCOPES`."""
    offset = slide_origin_um(slide_layer)
    if kind == "whole slide":
        return Scope.whole()
    if kind == "visible region":
        camera = camera_of(viewer)
        y0, x0, y1, x1 = visible_rect_um(tuple(camera.center), tuple(viewer.canvas.size), camera.zoom)
        return Scope.rect(y0 - offset[0], x0 - offset[1], y1 - offset[0], x1 - offset[1])
    if shapes_layer is None or len(shapes_layer.data) == 0:
        raise InputError("Draw a polygon or rectangle in a Shapes layer and pick it as the Shapes layer.")
    return Scope.polygons(shapes_to_polygons_um(shapes_layer, offset))


def find_layer(viewer: Any, slide_path: str, kind: str) -> Any:
    """The result layer of ``kind`` for ``slide_path`` (None when there is none yet)."""
    for layer in viewer.layers:
        tag = layer.metadata.get(METADATA_KEY)
        if tag and tag.get("slide") == slide_path and tag.get("kind") == kind:
            return layer
    return None


def build_layer(data: Any, kwargs: dict[str, Any], layer_type: str) -> Any:
    """A napari image or rectangle-shapes layer made from result data, not yet in any viewer.

    Building it touches no Qt, so a worker thread can do it; its position is relative to the slide
    until the dock places it (:meth:`~.worker_dock.WorkerDock.put_result_layer`)."""
    from napari.layers import Image, Shapes

    if layer_type == "image":
        return Image(data, **kwargs)
    return Shapes(data, **kwargs)


def warm_up_layers() -> None:
    """Build (and drop) one tiny shapes layer with features and text, so the one-time cost of the
    first (importing pandas and napari's shape code) is paid when the widget
    opens, not by a worker holding the interpreter while the user pans during a run."""
    square = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    build_layer(
        [square],
        {"shape_type": "rectangle", "features": {"rank": [1]}, "text": {"string": "{rank}"}},
        "shapes",
    )


# Characters the result layers' text draws (top-tile ranks) plus those vispy's text visual measures its
# line height with on first use ("ÅÉÑŐjgpqy ").
RESULT_TEXT_CHARS = "0123456789ÅÉÑŐjgpqy "


def warm_up_glyphs(viewer: Any, chars: str = RESULT_TEXT_CHARS) -> int:
    """Render the glyphs of ``chars`` into the viewer canvas's font atlas now (signed-distance fields
    computed in Python: about half of a new top-tiles layer's first paint in bench_responsiveness),
    so the first paint of a result layer with text, at the end of a run, does not. Returns how many
    glyphs were rendered; 0 when napari's canvas does not expose its font (private API: skipped,
    never an error)."""
    try:
        info = viewer.window._qt_viewer.canvas._font_info
        font = info.font_manager.get_font(info.face)
        missing = [ch for ch in dict.fromkeys(chars) if ch not in font._glyphs]
        for ch in missing:
            font[ch]
    except (AttributeError, TypeError, KeyError, RuntimeError):
        return 0
    return len(missing)


def add_quietly(viewer: Any, layer: Any) -> None:
    """Insert ``layer`` without making it the active layer: napari would otherwise switch the layer
    controls to it, the largest part of adding a layer to a running viewer."""
    layers = viewer.layers
    previous = getattr(layers, "_activate_on_insert", None)
    if previous is not None:
        layers._activate_on_insert = False
    try:
        layers.append(layer)
    finally:
        if previous is not None:
            layers._activate_on_insert = previous


def placed_translate(kwargs: dict[str, Any], offset: np.ndarray) -> tuple[float, ...]:
    """A result layer's translate in world µm: its slide-relative translate plus the slide's origin."""
    return tuple(np.asarray(kwargs.get("translate", (0.0, 0.0)), dtype=np.float64) + offset)


def _differs(current: Any, wanted: Any) -> bool:
    return not np.allclose(np.asarray(current, dtype=np.float64)[-2:], np.asarray(wanted, dtype=np.float64))


def update_steps(
    layer: Any, data: Any, kwargs: dict[str, Any], layer_type: str, translate: tuple[float, ...]
) -> list[Callable[[], None]]:
    """The changes that bring an existing result ``layer`` to new result data, one callable each, so a
    widget can run them in separate event-loop turns (each makes napari refresh the layer: together
    they blocked the GUI for one long turn at the end of a run). A property that already holds its
    new value when its step runs is left alone; position (scale with translate) changes in one step
    so the layer is never drawn half-moved."""
    name = kwargs["name"]

    def rename() -> None:
        if layer.name != name:
            layer.name = name

    def move() -> None:
        scale = kwargs.get("scale", layer.scale[-2:])
        if _differs(layer.scale, scale) or _differs(layer.translate, translate):
            layer.scale, layer.translate = scale, translate

    if layer_type == "image":

        def restyle() -> None:
            if "contrast_limits" in kwargs and _differs(layer.contrast_limits, kwargs["contrast_limits"]):
                layer.contrast_limits = kwargs["contrast_limits"]
            colormap = kwargs.get("colormap")
            if colormap is not None and getattr(colormap, "name", colormap) != layer.colormap.name:
                layer.colormap = colormap

        return [lambda: setattr(layer, "data", data), move, restyle, rename]

    def reshape() -> None:
        layer.selected_data = set()
        layer.data = [(rect, "rectangle") for rect in data]

    return [reshape, lambda: setattr(layer, "features", kwargs["features"]), move, rename]


def queue_in_place_update(
    queue: Any,
    viewer: Any,
    slide_path: str,
    data: Any,
    kwargs: dict[str, Any],
    layer_type: str,
    offset: np.ndarray,
) -> bool:
    """When ``slide_path`` already has a result layer of this kind, put its :func:`update_steps` at the
    front of ``queue`` (a :class:`~.gui_steps.StepQueue`: they run next, one per event-loop turn) and
    return True; False when a new layer has to be added."""
    existing = find_layer(viewer, slide_path, kwargs["metadata"][METADATA_KEY]["kind"])
    if existing is None:
        return False
    queue.push_front(update_steps(existing, data, kwargs, layer_type, placed_translate(kwargs, offset)))
    return True


def remove_stale(viewer: Any, slide_path: str, kinds: set[str], keep: set[str]) -> None:
    """Remove this slide's result layers of ``kinds`` that are not in ``keep``."""
    for kind in kinds - keep:
        stale = find_layer(viewer, slide_path, kind)
        if stale is not None:
            viewer.layers.remove(stale)
