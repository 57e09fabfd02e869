"""napari Shapes / Labels layers -> µm geometry relative to a slide (layer models only, no Qt).

Layers drawn over a slide live in world µm; the slide layer's ``translate`` is its origin. These
helpers return polygons and label masks relative to that origin, the convention of the tile grid.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..cohort import AnnotationError, LabelMask, Region, SlideAnnotations, parse_value_labels
from ..errors import InputError

LABEL_FEATURES = ("label", "class", "classification")


def slide_origin_um(slide_layer: Any) -> np.ndarray:
    """World (y, x) µm of the slide's level-0 origin."""
    return np.asarray(slide_layer.translate, dtype=np.float64)[-2:]


def shape_polygon_um(layer: Any, index: int, offset: np.ndarray) -> np.ndarray:
    """(K, 2) (y, x) µm polygon of shape ``index`` relative to ``offset``; ellipses become 64-gons,
    lines and paths are refused (they enclose no area)."""
    kind = layer.shape_type[index]
    vertices = np.asarray(layer.data[index], dtype=np.float64)[:, -2:]
    if kind in ("line", "path"):
        raise InputError(f"shape {index + 1} of {layer.name!r} is a {kind}, not an area; draw a polygon")
    if kind == "ellipse":
        centre = vertices.mean(axis=0)
        radii = (vertices.max(axis=0) - vertices.min(axis=0)) / 2
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        vertices = centre + np.column_stack([radii[0] * np.sin(t), radii[1] * np.cos(t)])
    world = np.array([layer.data_to_world(v)[-2:] for v in vertices])
    return world - offset


def shapes_to_polygons_um(layer: Any, offset: np.ndarray) -> list[np.ndarray]:
    """Polygons of a Shapes layer's selected shapes (all shapes when none is selected)."""
    indices = sorted(layer.selected_data) or list(range(len(layer.data)))
    return [shape_polygon_um(layer, i, offset) for i in indices]


def shape_labels(layer: Any, known: list[str] | None = None) -> list[str]:
    """The class of each shape: its ``label`` (or ``class``) feature, else the layer's name when that
    is a class name (a Shapes layer called "tumour" marks tumour regions)."""
    features = layer.features
    for column in LABEL_FEATURES:
        if column in features.columns:
            values = [str(v).strip() for v in features[column]]
            if any(not v or v.lower() == "nan" for v in values):
                raise AnnotationError(
                    f"some shapes of {layer.name!r} have no {column!r}; give every shape one"
                )
            return values
    name = layer.name.strip()
    if known is not None and name not in known:
        raise AnnotationError(
            f"the shapes of {layer.name!r} have no 'label' feature and the layer name is not a class "
            f"({', '.join(known)}): name the layer after the class, or add a 'label' feature"
        )
    return [name] * len(layer.data)


def annotations_from_layer(
    layer: Any, slide_layer: Any, value_labels: str = "1=tumour, 2=normal", known: list[str] | None = None
) -> SlideAnnotations:
    """The labelled regions of a Shapes layer, or the painted mask of a Labels layer, over a slide."""
    import napari

    offset = slide_origin_um(slide_layer)
    if isinstance(layer, napari.layers.Shapes):
        if len(layer.data) == 0:
            raise AnnotationError(f"{layer.name!r} has no shapes: draw tumour / normal regions first")
        labels = shape_labels(layer, known)
        regions = tuple(Region(shape_polygon_um(layer, i, offset), label) for i, label in enumerate(labels))
        return SlideAnnotations(regions=regions)
    if isinstance(layer, napari.layers.Labels):
        values = np.asarray(layer.data)
        if values.ndim != 2:
            raise AnnotationError(
                f"{layer.name!r} is {values.ndim}-D; paint a 2-D Labels layer over the slide"
            )
        if not values.any():
            raise AnnotationError(f"nothing is painted in {layer.name!r}")
        scale = tuple(float(v) for v in np.asarray(layer.scale)[-2:])
        origin = tuple(float(v) for v in np.asarray(layer.translate)[-2:] - offset)
        mask = LabelMask(values, scale, origin, parse_value_labels(value_labels))  # type: ignore[arg-type]
        return SlideAnnotations(masks=(mask,))
    raise AnnotationError(f"{layer.name!r} is neither a Shapes nor a Labels layer")
