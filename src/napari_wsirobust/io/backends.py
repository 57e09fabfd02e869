"""Which backend opens a file: by what the file is, with a stated fallback order."""

from __future__ import annotations

from pathlib import Path

from ..errors import InputError
from .checks import tiff_kind
from .dicom_source import dicom_files_in, is_dicom_file
from .source import TileSource

BACKENDS: tuple[str, ...] = ("auto", "tiffslide", "openslide", "wsidicom")
TIFF_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".scn", ".bif", ".qptiff")
OPENSLIDE_SUFFIXES = (".mrxs", ".vms", ".vmu", ".svslide")
DICOM_SUFFIXES = (".dcm",)
SUPPORTED_SUFFIXES = TIFF_SUFFIXES + OPENSLIDE_SUFFIXES + DICOM_SUFFIXES
FORMATS_HELP = (
    "supported: Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, Philips TIFF, generic tiled "
    "pyramidal TIFF, DICOM WSI folders and, through OpenSlide, MIRAX, Hamamatsu VMS/VMU and Sakura SVSLIDE"
)


def is_dicom(path: Path) -> bool:
    """A DICOM file, or a folder holding DICOM files."""
    if path.is_dir():
        return bool(dicom_files_in(path))
    return path.suffix.lower() in DICOM_SUFFIXES or is_dicom_file(path)


def candidates(path: Path, backend: str = "auto") -> list[str]:
    """Backends to try, in order: ``backend`` alone, or for ``auto`` the preferred one for what the
    file is followed by the fallbacks (DICOM: wsidicom, OpenSlide; OpenSlide-only formats:
    OpenSlide; TIFF family and anything else: tiffslide, OpenSlide)."""
    if backend not in BACKENDS:
        raise InputError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend != "auto":
        return [backend]
    if is_dicom(path):
        return ["wsidicom", "openslide"]
    if path.suffix.lower() in OPENSLIDE_SUFFIXES and tiff_kind(path) is None:
        return ["openslide"]
    return ["tiffslide", "openslide"]


def open_source(path: Path, backend: str) -> TileSource:
    """Open ``path`` with one named backend (raises :class:`SlideError` when it cannot)."""
    if backend == "tiffslide":
        from .tiff_source import TiffSource

        return TiffSource(path)
    if backend == "openslide":
        from .openslide_source import OpenSlideSource

        return OpenSlideSource(_openslide_target(path))
    from .dicom_source import DicomSource

    return DicomSource(path)


def _openslide_target(path: Path) -> Path:
    """OpenSlide opens a DICOM series from any one of its files: the largest (the base level)."""
    if path.is_dir():
        files = dicom_files_in(path)
        if files:
            return max(files, key=lambda p: p.stat().st_size)
    return path
