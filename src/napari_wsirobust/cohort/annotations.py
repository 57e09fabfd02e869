"""Labels drawn on a slide -> labelled tiles and a slide label (no Qt).

A pathologist marks regions (polygons from a napari Shapes layer, or painted values in a Labels
layer) as e.g. *tumour* or *normal*. A tile takes the label of the region holding its centre; a tile
inside regions of two different labels stays unlabelled (ambiguous), as do tiles outside every
region. The slide label follows: the one non-reference label drawn (e.g. any tumour region makes a
tumour slide), else the reference label (only normal regions drawn). Coordinates are µm relative to
the slide's origin, (y, x), the convention of :class:`~napari_wsirobust.tiling.TileGrid`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from ..errors import WsiRobustError
from ..tiling import Scope, TileGrid

UNLABELLED = -1


class AnnotationError(WsiRobustError, ValueError):
    """Annotations that cannot be turned into labels; the message says which and why."""


@dataclass(frozen=True)
class Region:
    """A drawn area, (K, 2) (y, x) µm vertices relative to the slide's origin, and its label."""

    polygon_um: np.ndarray
    label: str

    def __post_init__(self) -> None:
        poly = np.asarray(self.polygon_um, dtype=np.float64)
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            raise AnnotationError(f"a {self.label!r} region needs at least 3 (y, x) vertices")
        object.__setattr__(self, "polygon_um", poly)


@dataclass(frozen=True)
class LabelMask:
    """A painted label image: pixel (i, j) covers the µm square centred on origin + (i, j) * scale."""

    values: np.ndarray  # (H, W) integers, 0 = not annotated
    scale_um: tuple[float, float]
    origin_um: tuple[float, float]
    value_labels: dict[int, str]

    def labels_at(self, centres_um: np.ndarray) -> list[str | None]:
        """The label painted under each (y, x) point (None: outside the image or unpainted)."""
        idx = np.rint((centres_um - np.asarray(self.origin_um)) / np.asarray(self.scale_um)).astype(int)
        h, w = self.values.shape[-2:]
        out: list[str | None] = []
        for i, j in idx:
            value = int(self.values[i, j]) if 0 <= i < h and 0 <= j < w else 0
            out.append(self.value_labels.get(value) if value else None)
        return out

    def labels_present(self) -> set[str]:
        present = {int(v) for v in np.unique(self.values) if v}
        unknown = present - set(self.value_labels)
        if unknown:
            raise AnnotationError(
                f"painted values {sorted(unknown)} have no label; map them, e.g. "
                f"'{', '.join(f'{v}=tumour' for v in sorted(unknown))}'"
            )
        return {self.value_labels[v] for v in present}


@dataclass(frozen=True)
class SlideAnnotations:
    """Everything drawn on one slide."""

    regions: tuple[Region, ...] = ()
    masks: tuple[LabelMask, ...] = field(default=())

    def labels_present(self) -> set[str]:
        found = {r.label for r in self.regions}
        for mask in self.masks:
            found |= mask.labels_present()
        return found

    def tile_labels(self, grid: TileGrid, label_names: list[str]) -> np.ndarray:
        """(N,) label index per tile of ``grid``; :data:`UNLABELLED` outside or in conflicting regions."""
        unknown = sorted(self.labels_present() - set(label_names))
        if unknown:
            raise AnnotationError(f"annotation labels {unknown} are not among the labels {label_names}")
        centres = grid.centres_um
        votes = np.full((len(grid), len(label_names)), False)
        for region in self.regions:
            inside = Scope.polygons([region.polygon_um]).contains(centres[:, 0], centres[:, 1])
            votes[inside, label_names.index(region.label)] = True
        for mask in self.masks:
            for i, label in enumerate(mask.labels_at(centres)):
                if label is not None:
                    votes[i, label_names.index(label)] = True
        labels = np.full(len(grid), UNLABELLED, dtype=np.int64)
        single = votes.sum(axis=1) == 1
        labels[single] = votes[single].argmax(axis=1)
        return labels

    def slide_label(self, reference: str) -> str:
        """The non-reference label drawn (exactly one), else ``reference`` when only it was drawn."""
        present = self.labels_present()
        if not present:
            raise AnnotationError("no labelled region drawn")
        others = sorted(present - {reference})
        if len(others) > 1:
            raise AnnotationError(
                f"regions of several classes {others} on one slide: set the slide label in the table"
            )
        return others[0] if others else reference


def parse_value_labels(text: str) -> dict[int, str]:
    """``"1=tumour, 2=normal"`` -> {1: "tumour", 2: "normal"} (for Labels layers)."""
    mapping: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in re.split(r"[,;\n]", text))):
        match = re.fullmatch(r"(\d+)\s*[=:]\s*(\S.*)", part)
        if match is None or int(match.group(1)) == 0:
            raise AnnotationError(f"cannot read {part!r}: write value=label with value >= 1, e.g. 1=tumour")
        mapping[int(match.group(1))] = match.group(2).strip()
    if not mapping:
        raise AnnotationError("no value=label pairs given, e.g. 1=tumour, 2=normal")
    return mapping
