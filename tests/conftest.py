"""Shared fixtures: the public test slides in ../shared, small generated slides and cohorts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from napari_wsirobust.synthetic import (
    CohortConfig,
    SyntheticSlideSpec,
    TissueSpec,
    generate_cohort,
    write_synthetic_slide,
)

REPO = Path(__file__).resolve().parents[1]


def shared_slides_dir() -> Path:
    env = os.environ.get("WSIROBUST_SHARED_SLIDES")
    return Path(env) if env else REPO.parent / "shared" / "data" / "slides"


@pytest.fixture(scope="session")
def shared_slides() -> Path:
    folder = shared_slides_dir()
    if not folder.is_dir():
        pytest.skip(f"public test slides not found in {folder} (set WSIROBUST_SHARED_SLIDES)")
    return folder


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sample data is generated into a temporary folder, never the user's cache."""
    os.environ["WSIROBUST_DATA_DIR"] = str(tmp_path_factory.mktemp("wsirobust-data"))
    os.environ["WSIROBUST_CACHE_DIR"] = str(tmp_path_factory.mktemp("wsirobust-features"))


@pytest.fixture(scope="session")
def tumour_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated tumour slide (1024 x 768 at 0.5 µm/px, scanner A)."""
    path = tmp_path_factory.mktemp("slides") / "tumour_A.tiff"
    spec = SyntheticSlideSpec.make(TissueSpec(seed=5, tumour=True, width=1024, height=768), "A")
    write_synthetic_slide(spec, path)
    return path


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small cohort (512 x 384 slides) with the default design; returns its CSV."""
    cfg = CohortConfig(width=512, height=384, workers=2)
    return generate_cohort(tmp_path_factory.mktemp("cohort"), cfg)


@pytest.fixture(scope="session")
def analysis_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2048 x 1536 px at 0.5 µm/px, scanner B, 30 % tumour, obvious atypia; ground truth beside it."""
    path = tmp_path_factory.mktemp("analysis") / "tumour_B.tiff"
    tissue = TissueSpec(seed=21, tumour=True, width=2048, height=1536, tumour_fraction=0.3, atypia=1.0)
    write_synthetic_slide(SyntheticSlideSpec.make(tissue, "B"), path)
    return path


@pytest.fixture(scope="session")
def same_tissue_three_scanners(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tissue (1024 x 768, tumour) rendered by each synthetic scanner: A sharpest, C softest,
    JPEG quality 92 / 80 / 65."""
    folder = tmp_path_factory.mktemp("same-tissue")
    paths = {}
    for scanner in "ABC":
        paths[scanner] = folder / f"{scanner}.tiff"
        tissue = TissueSpec(seed=3, tumour=True, width=1024, height=768)
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), paths[scanner])
    return paths


@pytest.fixture(scope="session")
def dicom_slide(shared_slides: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared Aperio SVS converted to a DICOM WSI folder (level 0 keeps the SVS's JPEG tiles;
    wsidicomizer adds the lower levels, a label and an overview)."""
    os.environ.setdefault("TURBOJPEG", "/usr/lib/x86_64-linux-gnu/libturbojpeg.so.0")
    from wsidicomizer import WsiDicomizer

    out = tmp_path_factory.mktemp("dicom") / "cmu-1-small-region"
    WsiDicomizer.convert(shared_slides / "cmu-1-small-region.svs", out, add_missing_levels=True)
    return out


def _strip_mpp(path: Path) -> None:
    """Make every level's resolution tags unitless: the slide then has no pixel size (as many TCGA
    slides)."""
    import tifffile

    with tifffile.TiffFile(path, mode="r+b") as tif:
        pages = list(tif.pages)
        for page in list(pages):
            for offset in page.subifds or ():
                tif.filehandle.seek(offset)
                pages.append(tifffile.TiffPage(tif, index=0))
        for page in pages:
            page.tags["ResolutionUnit"].overwrite(1)


@pytest.fixture(scope="session")
def cohort_without_mpp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six small slides (640 x 448 px, really 0.5 µm/px) whose files state no pixel size, tumour and
    normal from scanners A and B, train 4 / val 2; returns their cohort CSV (no mpp column)."""
    import csv

    folder = tmp_path_factory.mktemp("no-mpp-cohort")
    rows = []
    for i in range(6):
        tumour, scanner = i % 2 == 0, "AB"[(i // 2) % 2]
        tissue = TissueSpec(
            seed=700 + i, tumour=tumour, width=640, height=448, tumour_fraction=0.4, atypia=1.0
        )
        path = folder / f"nompp{i}_{scanner}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), path)
        _strip_mpp(path)
        rows.append(
            [path.name, "tumour" if tumour else "normal", scanner, f"p{i}", "train" if i < 4 else "val"]
        )
    with open(folder / "cohort.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label", "scanner", "patient", "split"])
        writer.writerows(rows)
    return folder / "cohort.csv"


def overwrite_tiles(
    source: Path, target: Path, tiles: list[int], level: int = 0, junk: bytes = b"\x00"
) -> Path:
    """A copy of ``source`` whose listed file tiles (segment indices of ``level``) are overwritten."""
    import tifffile

    data = bytearray(source.read_bytes())
    with tifffile.TiffFile(source) as tf:
        page = tf.series[0].levels[level].pages[0]
        for index in tiles:
            offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
            data[offset : offset + count] = (junk * count)[:count]
    target.write_bytes(bytes(data))
    return target


@pytest.fixture
def damaged_copy(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Factory: ``damaged_copy(source, tiles, level=0)`` -> a copy with those file tiles zeroed."""

    def make(source: Path, tiles: list[int], level: int = 0) -> Path:
        return overwrite_tiles(source, tmp_path / f"damaged_{source.name}", tiles, level)

    return make


def gamma_icc_profile(gamma: float, description: str = "wsirobust test gamma") -> bytes:
    """A minimal ICC v2 RGB display profile: sRGB primaries (D50-adapted), a pure power-law tone
    curve of ``gamma``. With gamma 1.0 the pixels are declared linear, so converting them to sRGB
    brightens the mid-tones strongly."""
    import struct

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256)) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text" + b"\0" * 4 + b"none\0"),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 24
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 48
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + body


@pytest.fixture(scope="session")
def profiled_slide(tumour_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The generated tumour slide's pixels in a tiled TIFF that embeds a gamma-1.0 ICC profile."""
    import numpy as np
    import tifffile

    from napari_wsirobust.io import open_slide

    with open_slide(tumour_slide) as slide:
        image = np.asarray(slide.arrays[0])
    path = tmp_path_factory.mktemp("icc") / "profiled.tiff"
    tifffile.imwrite(
        path,
        image,
        tile=(256, 256),
        photometric="rgb",
        compression="zlib",
        resolution=(20000, 20000),
        resolutionunit="CENTIMETER",
        extratags=[(34675, 7, None, gamma_icc_profile(1.0), True)],
    )
    return path
