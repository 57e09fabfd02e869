"""Slides opened through OpenSlide (``openslide-python`` + ``openslide-bin``): MIRAX, Hamamatsu VMS/VMU,
Sakura SVSLIDE, Trestle, and a fallback for TIFF-family and DICOM files."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .errors import SlideReadError
from .source import LevelSpec, SourceInfo, TileSource, pil_associated_image

DEFAULT_TILE = 512


def _float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


class OpenSlideSource(TileSource):
    """A slide read with OpenSlide. A read that fails puts an OpenSlide handle into a permanent
    error state, so the handle is reopened after a failure and only that tile is lost."""

    backend = "openslide"

    def __init__(self, path: Path) -> None:
        try:
            import openslide
        except ImportError as exc:  # the package is a dependency; a broken install is still possible
            raise SlideReadError(path, f"OpenSlide is not available ({exc})") from exc
        super().__init__(path)
        self._openslide = openslide
        self._lock = threading.Lock()
        try:
            self._slide = openslide.OpenSlide(str(path))
        except Exception as exc:
            raise SlideReadError(path, f"OpenSlide cannot open it ({exc})") from exc
        props = self._slide.properties
        for i, (w, h) in enumerate(self._slide.level_dimensions):
            tw = int(props.get(f"openslide.level[{i}].tile-width", DEFAULT_TILE))
            th = int(props.get(f"openslide.level[{i}].tile-height", DEFAULT_TILE))
            self.levels.append(LevelSpec((int(h), int(w), 3), np.dtype(np.uint8), (th, tw)))
        profile = self._slide.color_profile
        self.info = SourceInfo(
            vendor=props.get("openslide.vendor"),
            mpp=(_float(props.get("openslide.mpp-x")), _float(props.get("openslide.mpp-y"))),
            objective_power=_float(props.get("openslide.objective-power")),
            icc_profile=profile.tobytes() if profile is not None else None,
            associated=sorted(self._slide.associated_images),
        )
        self._downsamples = [float(d) for d in self._slide.level_downsamples]

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        spec = self.levels[level]
        x0, y0, x1, y1 = spec.tile_box(row, col)
        ds = self._downsamples[level]
        location, size = (round(x0 * ds), round(y0 * ds)), (x1 - x0, y1 - y0)
        slide = self._slide
        try:
            image = slide.read_region(location, level, size)
        except self._openslide.OpenSlideError:
            self._reopen(slide)
            # A failure elsewhere may have spoiled the shared handle, and another may spoil the new one
            # while this tile is read again: read it on a handle of its own, which no other read can
            # spoil. Only a tile that fails there too is damaged.
            own = self._openslide.OpenSlide(str(self.path))
            try:
                image = own.read_region(location, level, size)
            finally:
                own.close()
        rgba = np.asarray(image)
        rgb = rgba[..., :3].copy()
        rgb[rgba[..., 3] == 0] = 255  # transparent (unscanned) areas are glass
        return rgb

    def _reopen(self, failed: object) -> None:
        with self._lock:
            if self._slide is failed:
                self._slide = self._openslide.OpenSlide(str(self.path))

    def associated_image(self, name: str) -> np.ndarray:
        return pil_associated_image(self._slide.associated_images, self.path, name)

    def close(self) -> None:
        self._slide.close()
