"""napari layer data for a scanner-swap what-if (no Qt): per profile, a drift map on the tile grid
and the tiles whose class flipped, aligned to the slide in µm like the analysis layers."""

from __future__ import annotations

import numpy as np

from ..analysis import LayerData, drift_colormap, grid_image, layer_metadata, tile_rectangles_um
from .whatif import WhatIfResult


def drift_kind(profile: str) -> str:
    return f"drift:{profile}"


def flips_kind(profile: str) -> str:
    return f"flips:{profile}"


def whatif_layers(result: WhatIfResult, name: str | None = None) -> list[LayerData]:
    """One drift image per profile (shared contrast limits, the first shown) and, for profiles
    under which some tiles flip class, a Shapes layer marking those tiles."""
    base = name or result.base.slide_name
    grid = result.base.grid
    path = result.base.request.slide_path
    top = max((float(o.drift.max()) for o in result.outcomes), default=0.0)
    limits = (0.0, max(top, 1e-3))
    layers: list[LayerData] = []
    for i, outcome in enumerate(result.outcomes):
        image, scale, translate = grid_image(grid, outcome.drift)
        layers.append(
            (
                image,
                {
                    "name": f"{base} drift ({outcome.name})",
                    "scale": scale,
                    "translate": translate,
                    "units": ("µm", "µm"),
                    "colormap": drift_colormap(),
                    "contrast_limits": limits,
                    "opacity": 0.6,
                    "blending": "translucent",
                    "interpolation2d": "nearest",
                    "visible": i == 0,
                    "metadata": layer_metadata(path, drift_kind(outcome.name)),
                },
                "image",
            )
        )
        flipped = np.flatnonzero(outcome.flipped)
        if len(flipped) == 0:
            continue
        layers.append(
            (
                tile_rectangles_um(grid, flipped),
                {
                    "name": f"{base} flipped tiles ({outcome.name})",
                    "shape_type": "rectangle",
                    "edge_color": "#ff00ff",
                    "face_color": "transparent",
                    "edge_width": max(2.0, 0.04 * grid.tile_size_level0[0] * grid.mpp[0]),
                    "units": ("µm", "µm"),
                    "visible": i == 0,
                    "features": {
                        "profile": [outcome.name] * len(flipped),
                        "drift": outcome.drift[flipped],
                        "attention_change": outcome.attention_change[flipped],
                    },
                    "metadata": layer_metadata(path, flips_kind(outcome.name)),
                },
                "shapes",
            )
        )
    return layers
