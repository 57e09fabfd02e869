"""Files out of an analysis: QuPath GeoJSON, per-tile CSV, slide-prediction CSV. Writes are atomic.

GeoJSON coordinates are level-0 pixels of the slide (x right, y down, pixel corners at integers),
which is what QuPath's *File > Import objects* expects. Every analysed tile becomes a ``tile``
object carrying its attention and class scores as measurements; the top-k tiles are also written
as ``annotation`` objects classified "Top attention" so they stand out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_write_csv, atomic_write_text
from ..errors import InputError
from ..mil import SCANNER_COLUMNS, scanner_cells
from .region import RegionAnalysis

TOP_CLASS = {"name": "Top attention", "color": [0, 255, 102]}


def _tile_polygon_px(result: RegionAnalysis, i: int) -> list[list[list[float]]]:
    g = result.grid
    x0, y0 = float(g.x0[i]), float(g.y0[i])
    x1, y1 = x0 + g.tile_size_level0[0], y0 + g.tile_size_level0[1]
    return [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]


def _measurements(result: RegionAnalysis, i: int, ranks: np.ndarray) -> dict[str, float]:
    m = {"attention": float(result.attention[i]), "attention percentile": float(ranks[i])}
    inst = result.prediction.instance_probabilities
    if inst is not None:
        for c, label in enumerate(result.label_names):
            m[f"p({label})"] = float(inst[i, c])
    return m


def geojson_dict(result: RegionAnalysis, top_k: int = 8) -> dict[str, Any]:
    """FeatureCollection of the analysed tiles (objectType ``tile``) and the top-k (``annotation``)."""
    ranks = result.attention_rank()
    inst = result.prediction.instance_probabilities
    features = []
    for i in range(len(result.grid)):
        props: dict[str, Any] = {
            "objectType": "tile",
            "name": f"tile r{int(result.grid.rows[i])} c{int(result.grid.cols[i])}",
            "measurements": _measurements(result, i, ranks),
        }
        if inst is not None:
            props["classification"] = {"name": result.label_names[int(inst[i].argmax())]}
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": _tile_polygon_px(result, i)},
                "properties": props,
            }
        )
    for rank, i in enumerate(result.top_k(top_k), 1):
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": _tile_polygon_px(result, int(i))},
                "properties": {
                    "objectType": "annotation",
                    "name": f"Top attention #{rank}",
                    "classification": TOP_CLASS,
                    "measurements": {**_measurements(result, int(i), ranks), **_scanner_measurements(result)},
                },
            }
        )
    collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
    collection["properties"] = {  # the slide's outcome (a foreign member; QuPath reads the features)
        "prediction": result.predicted_label,
        **{f"p_{label}": float(p) for label, p in zip(result.label_names, result.prediction.probabilities)},
        **_scanner_properties(result),
    }
    return collection


def _scanner_properties(result: RegionAnalysis) -> dict[str, Any]:
    """``profile_distance``, ``unlike_training`` and ``nearest_site`` (None without a scanner check)."""
    check = result.scanner
    if check is None:
        return {"profile_distance": None, "unlike_training": None, "nearest_site": None}
    return {
        "profile_distance": check.distance,
        "unlike_training": int(check.unlike_training),
        "nearest_site": check.nearest_site,
    }


def _scanner_measurements(result: RegionAnalysis) -> dict[str, float]:
    """The scanner check as numeric QuPath measurements (none without a check)."""
    check = result.scanner
    if check is None:
        return {}
    return {"profile distance": check.distance, "unlike training": float(check.unlike_training)}


def write_geojson(result: RegionAnalysis, path: str | os.PathLike[str], top_k: int = 8) -> Path:
    return atomic_write_text(path, json.dumps(geojson_dict(result, top_k)))


def tile_table(result: RegionAnalysis) -> tuple[list[str], list[list[Any]]]:
    """Header and rows of the per-tile table (one row per analysed tile, grid order)."""
    g = result.grid
    ranks = result.attention_rank()
    inst = result.prediction.instance_probabilities
    header = [
        "slide",
        "row",
        "col",
        "x_level0",
        "y_level0",
        "width_level0",
        "height_level0",
        "centre_y_um",
        "centre_x_um",
        "tissue_fraction",
        "attention",
        "attention_percentile",
    ]
    if inst is not None:
        header += [f"p_{label}" for label in result.label_names]
    centres = g.centres_um
    rows = []
    for i in range(len(g)):
        row = [
            result.slide_name,
            int(g.rows[i]),
            int(g.cols[i]),
            f"{g.x0[i]:.2f}",
            f"{g.y0[i]:.2f}",
            f"{g.tile_size_level0[0]:.2f}",
            f"{g.tile_size_level0[1]:.2f}",
            f"{centres[i, 0]:.2f}",
            f"{centres[i, 1]:.2f}",
            f"{g.tissue_fraction[i]:.3f}",
            f"{result.attention[i]:.6g}",
            f"{ranks[i]:.4f}",
        ]
        if inst is not None:
            row += [f"{v:.6f}" for v in inst[i]]
        rows.append(row)
    return header, rows


def write_tile_csv(result: RegionAnalysis, path: str | os.PathLike[str]) -> Path:
    return atomic_write_csv(path, *tile_table(result))


def write_slide_predictions_csv(results: Sequence[RegionAnalysis], path: str | os.PathLike[str]) -> Path:
    """One row per analysis: slide, scope, model, tiles, predicted label, each class probability and the
    scanner check (``profile_distance``, ``unlike_training``; blank when the model cannot check)."""
    if not results:
        raise InputError("no analyses to export")
    labels = results[0].label_names
    header = [
        "slide",
        "path",
        "scope",
        "model",
        "encoder",
        "n_tiles",
        "prediction",
        *[f"p_{label}" for label in labels],
        *SCANNER_COLUMNS,
    ]
    rows = []
    for r in results:
        if r.label_names != labels:
            raise InputError("the analyses use models with different labels; export them separately")
        rows.append(
            [
                r.slide_name,
                r.request.slide_path,
                r.request.scope.kind,
                r.request.model_dir,
                r.encoder_name,
                len(r.grid),
                r.predicted_label,
                *[f"{p:.6f}" for p in r.prediction.probabilities],
                *scanner_cells(r.scanner),
            ]
        )
    return atomic_write_csv(path, header, rows)
