"""A guard against napari crashing after a Shapes (or labelled Points) layer is removed.

With napari 0.9.2, vispy 0.17 and Mesa 22.3 (llvmpipe and softpipe alike), removing a Shapes layer from
a shown viewer and then adding a layer (an image, points, another Shapes layer) kills the whole process
with a segmentation fault inside ``glDrawArrays`` at a later paint; nothing of the session survives.
Points layers showing text do the same; Image, Labels, Vectors, Surface and Tracks layers and Points
without text were removed safely, and hiding a layer is always safe. Skipping the deletion of each
kind of GL object in turn pins it on the deleted *programs*: with the removed layer's programs kept
alive the viewer runs on (its buffers and textures can go). A pathologist meets this by deleting a
drawn selection or the top-tiles layer and opening the next slide, so every widget of this plugin
installs the guard on its viewer: when a layer whose visual has a text sub-visual (Shapes, Points,
Tracks) is about to be removed, the guard keeps all its vispy programs for the viewer's lifetime.
(Keeping only the two mesh programs of a Shapes layer sufficed when an image was added next, not when
another Shapes layer was.) Cost: memory. With Mesa, ``scripts/shapes_removal_crash.py --guard --cycles
40`` grew the resident size by 4.7 MiB per add-and-remove of a Shapes layer; adding and removing a
Points layer without text (no crash, so no guard needed) grows it by 0.9 MiB. Not verified on hardware
OpenGL (no such machine here), where compiled programs are far smaller.

It reaches into napari internals (the canvas' layer-to-visual map, vispy's visual tree and programs);
where they are missing (another napari version) it does nothing and says so by returning None.
"""

from __future__ import annotations

import weakref
from typing import Any

# id(layer list) -> (weak reference to it, kept programs); by identity, since napari's layer lists
# compare equal by content (two empty viewers' lists are ==).
_GUARDED: dict[int, tuple[weakref.ref[Any], list[Any]]] = {}


def _layer_visuals(viewer: Any) -> dict[Any, Any] | None:
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    return getattr(getattr(qt_viewer, "canvas", None), "layer_to_visual", None)


def visual_programs(visual: Any) -> list[Any]:
    """Every vispy program of ``visual`` and its sub-visuals, depth first."""
    programs = [visual._program] if getattr(visual, "_program", None) is not None else []
    for sub in getattr(visual, "_subvisuals", ()):
        programs.extend(visual_programs(sub))
    return programs


def _has_text(visual: Any) -> bool:
    if type(visual).__name__ == "Text":
        return True
    return any(_has_text(sub) for sub in getattr(visual, "_subvisuals", ()))


def programs_to_keep(layer_visual: Any) -> list[Any]:
    """The vispy programs to keep when this napari layer visual is removed: all of them for layers
    drawn with a text sub-visual (Shapes, Points, Tracks), none for the others."""
    node = getattr(layer_visual, "node", None)
    return visual_programs(node) if node is not None and _has_text(node) else []


def guard_layer_removal(viewer: Any) -> list[Any] | None:
    """Install the guard on ``viewer`` (once; later calls return the same list) and return the list
    in which it keeps the programs of removed layers (see :func:`programs_to_keep`); None where
    napari's internals differ."""
    layers = viewer.layers
    entry = _GUARDED.get(id(layers))
    if entry is not None and entry[0]() is layers:
        return entry[1]
    visuals = _layer_visuals(viewer)
    if visuals is None:
        return None
    kept: list[Any] = []

    def keep_programs(event: Any) -> None:
        try:
            layer = event.source[event.index]
        except (AttributeError, IndexError, TypeError):
            return
        kept.extend(programs_to_keep(visuals.get(layer)))

    layers.events.removing.connect(keep_programs)
    key = id(layers)
    _GUARDED[key] = (weakref.ref(layers, lambda _ref: _GUARDED.pop(key, None)), kept)
    return kept
