"""A guard against a crash in napari's OpenGL drawing after a Shapes layer is removed.

With napari 0.9.2, vispy 0.17 and Mesa 22.3 (llvmpipe and softpipe alike), removing a Shapes layer from a
shown viewer and then adding any layer (an image, points, another Shapes layer) crashes the whole
process with a segmentation fault inside ``glDrawArrays`` on the next paint; nothing of the session
survives. Points, Vectors, Labels, Surface and Image layers can be removed safely, and hiding a Shapes
layer is safe too. Bisecting the GL objects the removal deletes pins it on the two mesh programs
of the Shapes visual (faces and highlights): when neither is deleted the viewer keeps running (the
buffers, textures and other programs can go). A pathologist meets this by deleting a drawn selection
or the top-tiles layer and opening the next slide, so every widget of this plugin installs the guard
on its viewer: when a Shapes layer is about to be removed, the guard keeps its two mesh programs
alive for the viewer's lifetime. Cost: memory. With Mesa, ``scripts/shapes_removal_crash.py --guard
--cycles 40`` grew the resident size by 2.7 MiB per add-and-remove of a Shapes layer, where adding and
removing a Points layer (no guard needed) grows it by 0.9 MiB; a GPU driver keeps compiled programs
far smaller. Not verified on hardware OpenGL (no such machine here).

It reaches into napari internals (the canvas' layer-to-visual map, vispy's program objects); where
they are missing (another napari version) it does nothing and says so by returning None.
"""

from __future__ import annotations

import weakref
from typing import Any

MESH_PROGRAMS = ("shape_faces", "shape_highlights")  # sub-visuals of napari's ShapesVisual
# id(layer list) -> (weak reference to it, kept programs); by identity, since napari's layer lists
# compare equal by content (two empty viewers' lists are ==).
_GUARDED: dict[int, tuple[weakref.ref[Any], list[Any]]] = {}


def _layer_visuals(viewer: Any) -> dict[Any, Any] | None:
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    return getattr(getattr(qt_viewer, "canvas", None), "layer_to_visual", None)


def shapes_mesh_programs(visual: Any) -> list[Any]:
    """The vispy programs of a napari Shapes layer visual's meshes (empty for other layer visuals)."""
    node = getattr(visual, "node", None)
    programs = [getattr(getattr(node, name, None), "_program", None) for name in MESH_PROGRAMS]
    return [p for p in programs if p is not None]


def guard_shapes_removal(viewer: Any) -> list[Any] | None:
    """Install the guard on ``viewer`` (once; later calls return the same list) and return the list
    in which it keeps the programs of removed Shapes layers; None where napari's internals differ."""
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
        kept.extend(shapes_mesh_programs(visuals.get(layer)))

    layers.events.removing.connect(keep_programs)
    key = id(layers)
    _GUARDED[key] = (weakref.ref(layers, lambda _ref: _GUARDED.pop(key, None)), kept)
    return kept
