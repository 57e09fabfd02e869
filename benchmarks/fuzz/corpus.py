"""The fuzz corpus: recipes that write damaged, truncated and forged variants of the shared
public slides and a generated pyramid, each with the outcomes it may give (see the package's
docstring)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile

from .stages import CLEAN, ERROR, PARTIAL

TRUNCATION_POINTS = (0.001, 0.05, 0.1, 0.25, 0.4, 0.5, 0.66, 0.75, 0.9, 0.999)


@dataclass(frozen=True)
class Sources:
    """The intact files the variants are made from."""

    svs: Path  # Aperio JPEG, one level of 240-px tiles
    pyramid: Path  # generated 3-level JPEG pyramid (SubIFDs), 256-px tiles, 0.5 µm/px
    levels: Path  # small_HE_levels.tiff: 4-level deflate pyramid
    strips: Path  # kidney-48-5.tif: one uncompressed strip
    gray: Path  # smalltif.tif: uint16 grayscale
    broken: Path  # broken.svs: not a TIFF

    @classmethod
    def from_folders(cls, shared: Path, pyramid: Path) -> Sources:
        return cls(
            svs=shared / "cmu-1-small-region.svs",
            pyramid=pyramid,
            levels=shared / "small_HE_levels.tiff",
            strips=shared / "kidney-48-5.tif",
            gray=shared / "smalltif.tif",
            broken=shared / "broken.svs",
        )


Maker = Callable[[Sources, Path], Path]


@dataclass(frozen=True)
class Recipe:
    """How to make one variant (``make(sources, folder) -> path``) and what it may give."""

    name: str
    make: Maker
    expect: frozenset[str]
    note: str
    cli: bool = False  # also run through the command line (extract, predict)
    needs_non_root: bool = False  # root reads anything: the variant means nothing then
    known_issue: str | None = None  # a limitation not fixed yet: the variant is expected to fail


# -- byte-level editing ----------------------------------------------------------------------------
_FORMATS = {1: "B", 3: "H", 4: "I", 5: "II", 8: "h", 9: "i", 10: "ii", 13: "I", 16: "Q", 18: "Q"}


@dataclass(frozen=True)
class _Page:
    """Where a page's data and tags are in its file."""

    byteorder: str
    offsets: tuple[int, ...]
    counts: tuple[int, ...]
    tags: dict[str, tuple[int, int, int]]  # name -> (value offset, datatype, count)
    entries: dict[str, int]  # name -> offset of the tag's 12-byte directory entry


def _page(path: Path, level: int | None = None, page: int | None = None) -> _Page:
    """Pyramid level ``level`` of the first series, or file page ``page``."""
    with tifffile.TiffFile(path) as tf:
        p = tf.series[0].levels[level].pages[0] if level is not None else tf.pages[page or 0]
        tags = {t.name: (int(t.valueoffset), int(t.dtype), int(t.count)) for t in p.tags.values()}
        entries = {t.name: int(t.offset) for t in p.tags.values()}
        offsets, counts = tuple(map(int, p.dataoffsets)), tuple(map(int, p.databytecounts))
        return _Page(tf.byteorder, offsets, counts, tags, entries)


def _copy(source: Path, folder: Path, name: str | None = None) -> Path:
    target = folder / (name or f"{folder.name}{source.suffix}")
    target.write_bytes(source.read_bytes())
    return target


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(data)


def _set_tag(path: Path, info: _Page, name: str, values: dict[int, Any]) -> None:
    """Overwrite entries (index -> value) of tag ``name`` in place, keeping its type."""
    offset, dtype, count = info.tags[name]
    if dtype == 3 and count == 1 and any(isinstance(v, int) and v > 0xFFFF for v in values.values()):
        _patch(path, offset - 6, struct.pack(info.byteorder + "H", 4))  # inline SHORT -> LONG
        dtype = 4
    fmt = _FORMATS[dtype]
    size = struct.calcsize("<" + fmt)
    for index, value in values.items():
        packed = struct.pack(info.byteorder + fmt, *(value if isinstance(value, tuple) else (value,)))
        _patch(path, offset + index * size, packed)


def _junk(kind: str, count: int, original: bytes, rng: np.random.Generator) -> bytes:
    if kind == "zeros":
        return bytes(count)
    if kind == "random":
        return rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    flipped = np.frombuffer(original, np.uint8).copy()  # "bitflip": one bit in every 16th byte
    positions = np.arange(min(64, count), count, 16)  # leave the codec headers alone
    flipped[positions] ^= (1 << rng.integers(0, 8, positions.size)).astype(np.uint8)
    return flipped.tobytes()


# -- makers ----------------------------------------------------------------------------------------
def truncated(which: str, fraction: float) -> Maker:
    def make(src: Sources, folder: Path) -> Path:
        data = getattr(src, which).read_bytes()
        path = folder / f"{folder.name}{getattr(src, which).suffix}"
        path.write_bytes(data[: max(1, int(len(data) * fraction))])
        return path

    return make


def corrupt_tiles(which: str, tiles: Callable[[int], list[int]], kind: str, level: int = 0) -> Maker:
    """Overwrite file tiles (``tiles(n)`` of the level's ``n``) with zeros, random bytes or bit flips."""

    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        info = _page(path, level=level)
        data = bytearray(path.read_bytes())
        rng = np.random.default_rng(len(folder.name))
        for i in tiles(len(info.offsets)):
            o, c = info.offsets[i], info.counts[i]
            data[o : o + c] = _junk(kind, c, bytes(data[o : o + c]), rng)
        path.write_bytes(bytes(data))
        return path

    return make


def corrupt_page(which: str, page: int) -> Maker:
    """Zero every data segment of file page ``page`` (an associated image)."""

    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        info = _page(path, page=page)
        for o, c in zip(info.offsets, info.counts):
            _patch(path, o, bytes(c))
        return path

    return make


Edit = Callable[[_Page, int], dict[int, Any]]


def tag_edit(which: str, name: str, values: Edit, level: int = 0, **more: Edit) -> Maker:
    """Overwrite tag ``name`` (and the tags named in ``more``) of a level in place:
    ``values(page, file_size)`` -> {index: value}."""

    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        info = _page(path, level=level)
        for tag, edit in {name: values, **more}.items():
            _set_tag(path, info, tag, edit(info, path.stat().st_size))
        return path

    return make


def tag_count(which: str, name: str, count: Callable[[int], int], level: int = 0) -> Maker:
    """Change the value count of tag ``name`` of a level (``count(old) -> new``), values left alone."""

    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        info = _page(path, level=level)
        _patch(path, info.entries[name] + 4, struct.pack(info.byteorder + "I", count(info.tags[name][2])))
        return path

    return make


def description_garbage(which: str) -> Maker:
    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        offset, _, count = _page(path, level=0).tags["ImageDescription"]
        rng = np.random.default_rng(7)
        _patch(path, offset, rng.integers(1, 256, count - 1, dtype=np.uint8).tobytes())
        return path

    return make


def aperio_mpp(text: str) -> Maker:
    """The SVS with every ``MPP = 0.4990`` of its descriptions replaced by ``text`` (same length)."""

    def make(src: Sources, folder: Path) -> Path:
        old = b"MPP = 0.4990"
        new = text.encode().ljust(len(old))
        data = src.svs.read_bytes()
        assert old in data and len(new) == len(old)
        path = folder / f"{folder.name}.svs"
        path.write_bytes(data.replace(old, new))
        return path

    return make


def header_edit(which: str, edit: Callable[[bytearray, _Page], None]) -> Maker:
    def make(src: Sources, folder: Path) -> Path:
        path = _copy(getattr(src, which), folder)
        data = bytearray(path.read_bytes())
        edit(data, _page(path, page=0))
        path.write_bytes(bytes(data))
        return path

    return make


def _first_ifd_loops(data: bytearray, info: _Page) -> None:
    order = info.byteorder
    (first,) = struct.unpack(order + "I", data[4:8])
    (n,) = struct.unpack(order + "H", data[first : first + 2])
    data[first + 2 + 12 * n : first + 6 + 12 * n] = struct.pack(order + "I", first)


def _subifds_past_end(data: bytearray, info: _Page) -> None:
    offset, _, count = info.tags["SubIFDs"]
    for i in range(count):
        data[offset + 4 * i : offset + 4 * i + 4] = struct.pack(
            info.byteorder + "I", len(data) + 4096 * (i + 1)
        )


def _write(content: Callable[[np.random.Generator], bytes], name: str) -> Maker:
    def make(src: Sources, folder: Path) -> Path:
        path = folder / name
        path.write_bytes(content(np.random.default_rng(11)))
        return path

    return make


def _unreadable(src: Sources, folder: Path) -> Path:
    path = _copy(src.svs, folder)
    path.chmod(0)
    return path


def _folder(src: Sources, folder: Path) -> Path:
    (folder / "x.svs").mkdir()
    (folder / "x.svs" / "notes.txt").write_text("not a slide")
    return folder / "x.svs"


def _symlink_loop(src: Sources, folder: Path) -> Path:
    a, b = folder / "loop.svs", folder / "other.svs"
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def _broken_link(src: Sources, folder: Path) -> Path:
    path = folder / "dangling.svs"
    path.symlink_to(folder / "gone.svs")
    return path


def _empty(src: Sources, folder: Path) -> Path:
    path = folder / "empty.svs"
    path.touch()
    return path


def _dicom_garbage(rng: np.random.Generator) -> bytes:
    return rng.integers(0, 256, 128, dtype=np.uint8).tobytes() + b"DICM" + rng.bytes(4096)


def _tiff_header_only(rng: np.random.Generator) -> bytes:
    return b"II*\x00" + struct.pack("<I", 0)


def _both_resolutions(value: tuple[int, int]) -> Callable[[bytearray, _Page], None]:
    def edit(data: bytearray, info: _Page) -> None:
        for name in ("XResolution", "YResolution"):
            offset = info.tags[name][0]
            data[offset : offset + 8] = struct.pack(info.byteorder + "II", *value)

    return edit


_P, _C, _E = frozenset({PARTIAL}), frozenset({CLEAN}), frozenset({ERROR})
_PE, _PC = frozenset({PARTIAL, ERROR}), frozenset({PARTIAL, CLEAN})


def _first(n: int) -> list[int]:
    return [0]


def _every_7th(n: int) -> list[int]:
    return list(range(0, n, 7))


def _every(n: int) -> list[int]:
    return list(range(n))


def _past_end(tiles: Callable[[int], list[int]]) -> Callable[[_Page, int], dict[int, Any]]:
    return lambda page, size: {i: size + 10**6 * (i + 1) for i in tiles(len(page.offsets))}


def _zero_counts(tiles: Callable[[int], list[int]]) -> Callable[[_Page, int], dict[int, Any]]:
    return lambda page, size: dict.fromkeys(tiles(len(page.offsets)), 0)


def _first_value(value: Any) -> Callable[[_Page, int], dict[int, Any]]:
    return lambda page, size: {0: value}


def _truncation_recipes() -> list[Recipe]:
    # The SVS keeps its directories at the end (every cut loses one: a clear error); the generated
    # pyramid keeps its first directory at the start (a cut loses tiles and lower levels).
    out = []
    for which, label, expect in (("svs", "svs", _E), ("pyramid", "pyr", _PE)):
        for f in TRUNCATION_POINTS:
            tag = f"{f * 100:g}".replace(".", "_")
            out.append(
                Recipe(f"{label}-truncated-{tag}pct", truncated(which, f), expect, f"first {f:.1%} kept")
            )
    return out


def _tile_recipes() -> list[Recipe]:
    undetectable = "may decode as wrong pixels (undetectable)"
    return [
        Recipe("svs-tile0-zeros", corrupt_tiles("svs", _first, "zeros"), _P, "tile 0 (glass) zeroed"),
        Recipe(
            "svs-centre-tile-zeros",
            corrupt_tiles("svs", lambda n: [65], "zeros"),
            _P,
            "tile (6, 5) in the tissue zeroed",
            cli=True,
        ),
        Recipe("svs-tiles-random", corrupt_tiles("svs", _every_7th, "random"), _P, "every 7th tile random"),
        Recipe(
            "svs-tiles-bitflip",
            corrupt_tiles("svs", _every_7th, "bitflip"),
            _PC,
            f"bit flips in every 7th tile's JPEG data: {undetectable}",
        ),
        Recipe("pyr-tile0-zeros", corrupt_tiles("pyramid", _first, "zeros"), _P, "level-0 tile 0 zeroed"),
        Recipe(
            "pyr-tiles-random",
            corrupt_tiles("pyramid", _every_7th, "random"),
            _P,
            "level-0 tiles 0 and 7 random bytes",
            cli=True,
        ),
        Recipe(
            "pyr-tiles-bitflip",
            corrupt_tiles("pyramid", _every, "bitflip"),
            _PC,
            f"bit flips in every level-0 JPEG tile: {undetectable}",
        ),
        Recipe(
            "pyr-level1-random", corrupt_tiles("pyramid", _first, "random", 1), _P, "level-1 tile 0 random"
        ),
        Recipe(
            "pyr-level2-zeros", corrupt_tiles("pyramid", _first, "zeros", 2), _P, "the overview's one tile"
        ),
        Recipe("levels-l0-bitflip", corrupt_tiles("levels", _every_7th, "bitflip"), _P, "deflate: checksum"),
        Recipe("levels-l2-zeros", corrupt_tiles("levels", _first, "zeros", 2), _P, "level-2 deflate tile"),
        Recipe(
            "strips-random",
            corrupt_tiles("strips", _first, "random"),
            _C,
            "uncompressed strip of random bytes: every byte is a valid pixel (undetectable)",
        ),
        Recipe("svs-label-zeros", corrupt_page("svs", 2), _C, "label image zeroed: not a level"),
        Recipe("svs-thumbnail-zeros", corrupt_page("svs", 1), _C, "thumbnail zeroed: not a level"),
    ]


def _table_recipes() -> list[Recipe]:
    huge = _first_value(2**31 - 1)
    return [
        Recipe(
            "svs-offsets-past-end",
            tag_edit("svs", "TileOffsets", _past_end(_every_7th)),
            _P,
            "every 7th TileOffsets entry past the end of the file",
            cli=True,
        ),
        Recipe(
            "pyr-offsets-past-end",
            tag_edit("pyramid", "TileOffsets", _past_end(_first), level=1),
            _P,
            "level-1 TileOffsets[0] past the end",
        ),
        Recipe(
            "svs-bytecounts-zero", tag_edit("svs", "TileByteCounts", _zero_counts(_every_7th)), _P, "1 in 7"
        ),
        Recipe(
            "strips-bytecount-zero",
            tag_edit("strips", "StripByteCounts", _zero_counts(_first)),
            _P,
            "one strip",
        ),
        Recipe(
            "svs-compression-50000",
            tag_edit("svs", "Compression", _first_value(50000)),
            _P,
            "Compression 50000: opens, every tile reported undecodable",
        ),
        Recipe(
            "pyr-compression-50000",
            tag_edit("pyramid", "Compression", _first_value(50000)),
            _P,
            "level-0 Compression 50000: its tiles reported, lower levels show",
        ),
        Recipe(
            "pyr-l1-compression-50000",
            tag_edit("pyramid", "Compression", _first_value(50000), level=1),
            _P,
            "level-1 Compression 50000: its 4 tiles reported",
        ),
        Recipe("svs-width-2e31", tag_edit("svs", "ImageWidth", huge), _E, "ImageWidth 2**31-1"),
        Recipe("svs-length-2e31", tag_edit("svs", "ImageLength", huge), _E, "ImageLength 2**31-1"),
        Recipe("pyr-width-2e31", tag_edit("pyramid", "ImageWidth", huge), _E, "level-0 ImageWidth 2**31-1"),
        Recipe(
            "pyr-l1-width-2e31",
            tag_edit("pyramid", "ImageWidth", huge, level=1),
            _C,
            "level-1 ImageWidth 2**31-1: tifffile leaves the inconsistent level out, levels 0 and 2 read",
        ),
    ]


def _layout_recipes() -> list[Recipe]:
    """Tile geometry, tile tables and samples that disagree with each other."""
    huge, codec = _first_value(2**31 - 1), _first_value(50000)
    return [
        Recipe("pyr-tilewidth-0", tag_edit("pyramid", "TileWidth", _first_value(0)), _E, "TileWidth 0"),
        Recipe(
            "pyr-tilewidth-2e31",
            tag_edit("pyramid", "TileWidth", huge),
            _P,
            "level-0 TileWidth 2**31-1: its tiles reported, lower levels show",
        ),
        Recipe(
            "svs-samples-1",
            tag_edit("svs", "SamplesPerPixel", _first_value(1)),
            _P,
            "SamplesPerPixel 1 on an RGB JPEG: every tile reported, analysis refused (not RGB)",
        ),
        Recipe(
            "svs-bytecounts-short",
            tag_count("svs", "TileByteCounts", lambda n: n // 2),
            _P,
            "TileByteCounts lists 65 of 130 tiles: the rest reported (was an IndexError)",
        ),
        Recipe(
            "pyr-offsets-short",
            tag_count("pyramid", "TileOffsets", lambda n: n // 2),
            _P,
            "TileOffsets lists 6 of 12 level-0 tiles: the rest reported",
        ),
        Recipe(
            "pyr-tilelength-0-codec-50000",
            tag_edit("pyramid", "TileLength", _first_value(0), Compression=codec),
            _E,
            "TileLength 0 and Compression 50000 (was a ZeroDivisionError in dask)",
        ),
        Recipe(
            "svs-tilelength-0-codec-50000",
            tag_edit("svs", "TileLength", _first_value(0), Compression=codec),
            _E,
            "TileLength 0 and Compression 50000 (was a ZeroDivisionError in dask)",
        ),
        Recipe(
            "strips-samples-64",
            tag_edit("strips", "SamplesPerPixel", _first_value(64)),
            _P,
            "SamplesPerPixel 64 on a 4 MB strip: reported (its contrast limits took 1.3 GiB before)",
        ),
        Recipe(
            "pyr-samples-24835",
            tag_edit("pyramid", "SamplesPerPixel", _first_value(24835)),
            _E,
            "SamplesPerPixel 24835: refused (viewing it asked for 18 GiB before)",
        ),
        Recipe(
            "strips-width-150000",
            tag_edit("strips", "ImageWidth", _first_value(150000)),
            _P,
            "ImageWidth 150000 on a 4 MB strip: reported (a 405 MB blank stand-in per read before)",
        ),
        Recipe(
            "strips-width-329173",
            tag_edit("strips", "ImageWidth", _first_value(329173)),
            _P,
            "ImageWidth 329173 on a 4 MB strip (890 MB decoded)",
        ),
    ]


def _metadata_recipes() -> list[Recipe]:
    return [
        Recipe(
            "svs-description-garbage",
            description_garbage("svs"),
            _C,
            "ImageDescription random bytes: no Aperio metadata, so no MPP (tiling refused)",
        ),
        Recipe(
            "pyr-description-garbage",
            description_garbage("pyramid"),
            _C,
            "ImageDescription random bytes: MPP still from the resolution tags",
        ),
        Recipe("svs-mpp-zero", aperio_mpp("MPP = 0"), _C, "Aperio MPP = 0: no MPP (tiling refused)"),
        Recipe(
            "svs-mpp-negative", aperio_mpp("MPP = -0.5"), _C, "Aperio MPP = -0.5: no MPP (tiling refused)"
        ),
        Recipe("svs-mpp-nan", aperio_mpp("MPP = nan"), _C, "Aperio MPP = nan: no MPP (tiling refused)"),
        Recipe(
            "pyr-resolution-zero",
            tag_edit("pyramid", "XResolution", _first_value((0, 1))),
            _C,
            "XResolution 0/1 (YResolution intact): no MPP (tiling refused)",
        ),
        Recipe(
            "pyr-resolution-0-over-0",
            header_edit("pyramid", _both_resolutions((0, 0))),
            _C,
            "X and YResolution 0/0: no MPP (tiling refused)",
        ),
        Recipe(
            "gray-uint16",
            lambda s, f: _copy(s.gray, f),
            _C,
            "intact uint16 grayscale, no MPP: tiling refused",
        ),
    ]


def _file_recipes() -> list[Recipe]:
    past_end = struct.pack("<I", 2**32 - 16)
    return [
        Recipe("pyr-ifd-loop", header_edit("pyramid", _first_ifd_loops), _E, "first IFD's next is itself"),
        Recipe(
            "pyr-subifds-past-end",
            header_edit("pyramid", _subifds_past_end),
            _C,
            "SubIFDs point past the end: opens as level 0 alone (intact), levels 1-2 dropped",
        ),
        Recipe(
            "pyr-header-past-end",
            header_edit("pyramid", lambda d, p: d.__setitem__(slice(4, 8), past_end)),
            _E,
            "header's first-IFD offset past the end",
        ),
        Recipe("unreadable", _unreadable, _E, "chmod 000 (meaningless as root)", needs_non_root=True),
        Recipe("folder-x.svs", _folder, _E, "a folder named x.svs"),
        Recipe("symlink-loop", _symlink_loop, _E, "loop.svs -> other.svs -> loop.svs"),
        Recipe("broken-symlink", _broken_link, _E, "dangling.svs -> gone.svs (missing)"),
        Recipe("empty", _empty, _E, "0 bytes"),
        Recipe("broken.svs", lambda s, f: _copy(s.broken, f, "broken.svs"), _E, "shared broken.svs"),
        Recipe("random.svs", _write(lambda r: r.bytes(65536), "random.svs"), _E, "64 KiB random bytes"),
        Recipe("text.svs", _write(lambda r: b"not a slide\n" * 100, "text.svs"), _E, "a text file"),
        Recipe("garbage.dcm", _write(_dicom_garbage, "garbage.dcm"), _E, "DICOM preamble + DICM + junk"),
        Recipe("tiff-header-only", _write(_tiff_header_only, "header.tif"), _E, "TIFF header, no IFD"),
    ]


RECIPES: tuple[Recipe, ...] = (
    *_truncation_recipes(),
    *_tile_recipes(),
    *_table_recipes(),
    *_layout_recipes(),
    *_metadata_recipes(),
    *_file_recipes(),
)
RECIPE_NAMES: tuple[str, ...] = tuple(r.name for r in RECIPES)


@dataclass(frozen=True)
class Variant:
    """One file of the corpus."""

    recipe: Recipe
    path: Path


def build_corpus(folder: Path, sources: Sources) -> dict[str, Variant]:
    """Write every variant into its own sub-folder of ``folder``; returns them by recipe name."""
    corpus = {}
    for recipe in RECIPES:
        sub = folder / recipe.name
        sub.mkdir(parents=True, exist_ok=True)
        corpus[recipe.name] = Variant(recipe, recipe.make(sources, sub))
    return corpus


def generate_pyramid(path: Path) -> Path:
    """The generated slide of the tests' ``tumour_slide`` fixture (1024 x 768, 0.5 µm/px, scanner A)."""
    from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide

    spec = SyntheticSlideSpec.make(TissueSpec(seed=5, tumour=True, width=1024, height=768), "A")
    write_synthetic_slide(spec, path)
    return path
