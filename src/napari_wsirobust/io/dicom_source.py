"""DICOM whole-slide images (a folder of ``.dcm`` instances, or any one file of a series) through
``wsidicom``. Encoded frames are fetched from wsidicom and decoded here with imagecodecs (JPEG,
JPEG 2000); other transfer syntaxes use wsidicom's own decoder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import SlideReadError
from .source import LevelSpec, SourceInfo, TileSource

DICM_OFFSET = 128


def is_dicom_file(path: Path) -> bool:
    """True when ``path`` starts with a DICOM preamble (``DICM`` at byte 128)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(DICM_OFFSET)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def dicom_files_in(folder: Path) -> list[Path]:
    """The DICOM files directly inside ``folder``."""
    try:
        return sorted(p for p in folder.iterdir() if p.is_file() and is_dicom_file(p))
    except OSError:
        return []


def _frame_decoder(transfer_syntax: str) -> Callable[[bytes], np.ndarray] | None:
    import imagecodecs

    if transfer_syntax in ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51"):
        return imagecodecs.jpeg8_decode
    if transfer_syntax in (
        "1.2.840.10008.1.2.4.90",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.201",
        "1.2.840.10008.1.2.4.202",
        "1.2.840.10008.1.2.4.203",
    ):
        return imagecodecs.jpeg2k_decode
    return None


class DicomSource(TileSource):
    """The first pyramid of a DICOM WSI series; other optical paths and focal planes are named in
    the notes."""

    backend = "wsidicom"

    def __init__(self, path: Path) -> None:
        try:
            import wsidicom
        except ImportError as exc:
            raise SlideReadError(path, f"wsidicom is not available ({exc})") from exc
        super().__init__(path)
        folder = path if path.is_dir() else path.parent
        files = dicom_files_in(folder)
        if not files:
            raise SlideReadError(path, "contains no DICOM files")
        try:
            self._wsi = wsidicom.WsiDicom.open(files)
        except Exception as exc:
            raise SlideReadError(path, f"not a readable DICOM WSI series ({exc})") from exc
        try:
            self._open_levels()
        except Exception as exc:
            self._wsi.close()
            raise SlideReadError(path, f"its DICOM pyramid cannot be read ({exc})") from exc

    def _open_levels(self) -> None:
        levels = list(self._wsi.levels)
        if not levels:
            raise ValueError("no pyramid levels")
        self._level_numbers = [int(lv.level) for lv in levels]
        self._decoders = []
        for lv in levels:
            size, tile = lv.size, lv.tile_size
            self.levels.append(
                LevelSpec(
                    (int(size.height), int(size.width), 3),
                    np.dtype(np.uint8),
                    (int(tile.height), int(tile.width)),
                )
            )
            syntax = str(lv.default_instance.image_data.transfer_syntax)
            self._decoders.append(_frame_decoder(syntax))
        base = levels[0]
        notes = []
        paths, planes = list(base.optical_paths), list(base.focal_planes)
        if len(paths) > 1:
            notes.append(f"optical paths {', '.join(map(str, paths))}: showing {paths[0]}")
        if len(planes) > 1:
            notes.append(f"focal planes {', '.join(f'{z:g}' for z in planes)} µm: showing {planes[0]:g}")
        if len(self._wsi.pyramids) > 1:
            notes.append(f"{len(self._wsi.pyramids)} pyramids in the series: showing the first")
        optical = self._wsi.metadata.pyramid.optical_paths
        icc = optical[0].icc_profile if optical else None
        equipment = self._wsi.metadata.equipment
        vendor = getattr(equipment, "manufacturer", None)
        mpp = base.mpp
        associated = (["label"] if self._wsi.labels else []) + (["macro"] if self._wsi.overviews else [])
        self.info = SourceInfo(
            vendor=f"dicom ({vendor})" if vendor and vendor != "Unknown" else "dicom",
            mpp=(float(mpp.width), float(mpp.height)) if mpp is not None else (None, None),
            objective_power=None,
            icc_profile=bytes(icc) if icc else None,
            associated=associated,
            notes=notes,
        )

    def read_tile(self, level: int, row: int, col: int) -> np.ndarray:
        spec = self.levels[level]
        x0, y0, x1, y1 = spec.tile_box(row, col)
        number, decode = self._level_numbers[level], self._decoders[level]
        if decode is None:
            image = np.asarray(self._wsi.read_tile(number, (col, row)).convert("RGB"))
        else:
            image = decode(self._wsi.read_encoded_tile(number, (col, row), crop_to_image_boundary=False))
        return np.ascontiguousarray(image[: y1 - y0, : x1 - x0, :3])

    def associated_image(self, name: str) -> np.ndarray:
        if name == "label" and self._wsi.labels:
            return np.asarray(self._wsi.read_label().convert("RGB"))
        if name == "macro" and self._wsi.overviews:
            return np.asarray(self._wsi.read_overview().convert("RGB"))
        raise KeyError(f"{self.path.name} has no associated image {name!r}")

    def close(self) -> None:
        self._wsi.close()
