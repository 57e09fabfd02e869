"""npe2 reader contribution: thin adapter over :class:`napari_wsirobust.io.WSI` (slide files and
DICOM WSI folders)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._vispy import install_vispy_patches
from .io import SUPPORTED_SUFFIXES, is_dicom, open_slide

LayerData = tuple[Any, dict[str, Any], str]


def _claims(path: str) -> bool:
    """A path with a slide suffix (a folder so named gets a clear error when read) or a DICOM folder."""
    p = Path(path)
    if p.suffix.lower() in SUPPORTED_SUFFIXES:
        return True
    return p.is_dir() and is_dicom(p)


def napari_get_reader(path: str | Sequence[str]) -> Callable[..., list[LayerData]] | None:
    """Return the slide reader when every path looks like a slide; ``None`` otherwise. Never raises."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or not all(_claims(str(p)) for p in paths):
        return None
    return read_slides


def read_slides(path: str | Sequence[str]) -> list[LayerData]:
    """Open each slide lazily and return its layer data. Damaged or unsupported files raise
    :class:`~napari_wsirobust.io.SlideError` whose message names the file and the reason; napari
    shows it as a notification and keeps running."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    install_vispy_patches()  # a viewer showing slides must survive removing layers (see _vispy)
    layers: list[LayerData] = []
    for p in paths:
        layers.extend(open_slide(p).to_layer_data())
    return layers
