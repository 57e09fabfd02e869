"""napari layer data for a :class:`~.region.RegionAnalysis`, aligned to the slide in µm.

Layer data tuples ``(data, kwargs, layer_type)`` so they can be checked without a viewer. Grid maps
cover the bounding box of the analysed tiles; cell (i, j) is tile (row0 + i, col0 + j) and is
centred on that tile's centre (see :mod:`napari_wsirobust.io.geometry` for the convention). Cells
without an analysed tile hold 0, which the colormaps render fully transparent.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..io import level0_to_world
from ..tiling import TileGrid
from .region import RegionAnalysis

LayerData = tuple[Any, dict[str, Any], str]
METADATA_KEY = "wsirobust_analysis"
MIN_VISIBLE = 1e-4  # values are clipped up to this so a real tile is never confused with background


def _ramp(name: str, stops: list[tuple[float, float, float]]) -> Any:
    from napari.utils.colormaps import Colormap

    colours = [(0.0, 0.0, 0.0, 0.0)] + [(*c, 1.0) for c in stops]
    controls = [0.0] + list(np.linspace(MIN_VISIBLE / 2, 1.0, len(stops)))
    return Colormap(colors=colours, controls=controls, name=name, interpolation="linear")


def attention_colormap() -> Any:
    """Transparent background, then dark blue -> cyan -> yellow -> red for rising attention."""
    return _ramp(
        "wsirobust-attention",
        [(0.05, 0.05, 0.35), (0.0, 0.55, 0.85), (0.35, 0.85, 0.45), (1.0, 0.85, 0.1), (0.85, 0.1, 0.05)],
    )


def score_colormap() -> Any:
    """Transparent background, then blue (class unlikely) -> white -> red (class likely)."""
    return _ramp("wsirobust-score", [(0.15, 0.3, 0.85), (0.95, 0.95, 0.95), (0.85, 0.1, 0.1)])


def drift_colormap() -> Any:
    """Transparent background, then pale yellow -> orange -> dark red for rising embedding drift."""
    return _ramp("wsirobust-drift", [(1.0, 0.95, 0.6), (0.98, 0.6, 0.15), (0.8, 0.15, 0.05), (0.4, 0.0, 0.1)])


def grid_image(
    grid: TileGrid, values: np.ndarray
) -> tuple[np.ndarray, tuple[float, float], tuple[float, float]]:
    """(image, scale, translate) of per-tile ``values`` over the tiles' bounding box in grid cells."""
    if len(grid) == 0:
        raise ValueError("no tiles to map")
    r0, c0 = int(grid.rows.min()), int(grid.cols.min())
    shape = (int(grid.rows.max()) - r0 + 1, int(grid.cols.max()) - c0 + 1)
    image = np.zeros(shape, np.float32)
    image[grid.rows - r0, grid.cols - c0] = np.clip(values, MIN_VISIBLE, None)
    mx, my = grid.mpp
    sx, sy = grid.stride_level0
    w, h = grid.tile_size_level0
    scale = (sy * my, sx * mx)
    # centre of cell (0, 0) = centre of tile (r0, c0) in world µm
    cy, cx = level0_to_world(c0 * sx + w / 2, r0 * sy + h / 2, grid.mpp)
    return image, scale, (float(cy), float(cx))


def tile_rectangles_um(grid: TileGrid, indices: np.ndarray) -> list[np.ndarray]:
    """(4, 2) (y, x) µm corners of each tile in ``indices`` (napari rectangle shapes)."""
    w, h = grid.tile_size_level0
    out = []
    for i in indices:
        y0, x0 = level0_to_world(grid.x0[i], grid.y0[i], grid.mpp)
        y1, x1 = level0_to_world(grid.x0[i] + w, grid.y0[i] + h, grid.mpp)
        out.append(np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], np.float64))
    return out


def score_class(result: RegionAnalysis) -> int:
    """The class shown in the tile-score map: the predicted class, or class 1 when the slide is
    predicted as the reference class 0 (e.g. "normal": the map then shows where tumour evidence is)."""
    return result.prediction.label_index or 1


def layer_metadata(slide_path: str, kind: str) -> dict[str, Any]:
    """The tag that lets a widget find (and update in place) a slide's result layer of ``kind``."""
    return {METADATA_KEY: {"slide": slide_path, "kind": kind}}


def _metadata(result: RegionAnalysis, kind: str) -> dict[str, Any]:
    return layer_metadata(result.request.slide_path, kind)


def analysis_layers(result: RegionAnalysis, top_k: int = 8, name: str | None = None) -> list[LayerData]:
    """Attention heatmap, tile-score map (when the head has instance scores) and top-k tiles."""
    base = name or result.slide_name
    grid = result.grid
    units = ("µm", "µm")
    image, scale, translate = grid_image(grid, result.attention_rank())
    layers: list[LayerData] = [
        (
            image,
            {
                "name": f"{base} attention",
                "scale": scale,
                "translate": translate,
                "units": units,
                "colormap": attention_colormap(),
                "contrast_limits": (0.0, 1.0),
                "opacity": 0.55,
                "blending": "translucent",
                "interpolation2d": "nearest",
                "metadata": _metadata(result, "attention"),
            },
            "image",
        )
    ]
    inst = result.prediction.instance_probabilities
    if inst is not None:
        k = score_class(result)
        scores, _, _ = grid_image(grid, inst[:, k])
        layers.append(
            (
                scores,
                {
                    "name": f"{base} tile score ({result.label_names[k]})",
                    "scale": scale,
                    "translate": translate,
                    "units": units,
                    "colormap": score_colormap(),
                    "contrast_limits": (0.0, 1.0),
                    "opacity": 0.5,
                    "blending": "translucent",
                    "interpolation2d": "nearest",
                    "visible": False,
                    "metadata": _metadata(result, "score"),
                },
                "image",
            )
        )
    top = result.top_k(top_k)
    layers.append(
        (
            tile_rectangles_um(grid, top),
            {
                "name": f"{base} top {len(top)} tiles",
                "shape_type": "rectangle",
                "edge_color": "#00ff66",
                "face_color": "transparent",
                "edge_width": max(2.0, 0.04 * grid.tile_size_level0[0] * grid.mpp[0]),
                "units": units,
                "features": top_tile_features(result, top),
                "text": {"string": "{rank}", "size": 14, "color": "#00ff66", "anchor": "center"},
                "metadata": _metadata(result, "top_tiles"),
            },
            "shapes",
        )
    )
    return layers


def top_tile_features(result: RegionAnalysis, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Per-shape features of the top tiles: rank, attention, its percentile, class scores, position."""
    grid = result.grid
    centres = grid.centres_um[indices] if len(indices) else np.zeros((0, 2))
    features: dict[str, np.ndarray] = {
        "rank": np.arange(1, len(indices) + 1),
        "attention": result.attention[indices].astype(np.float64),
        "attention_rank": result.attention_rank()[indices].astype(np.float64),
        "row": grid.rows[indices],
        "col": grid.cols[indices],
        "centre_y_um": centres[:, 0],
        "centre_x_um": centres[:, 1],
    }
    inst = result.prediction.instance_probabilities
    if inst is not None:
        for c, label in enumerate(result.label_names):
            features[f"p_{label}"] = inst[indices, c].astype(np.float64)
    return features
