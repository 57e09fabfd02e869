"""The package graph: every import between the plugin's packages runs down the layers, goes through the
imported package's front (its ``__init__``) and takes no private name. Parsed with ``ast``: nothing is
imported, so the test also runs where napari or torch are missing."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_wsirobust"

# Bottom first. A package may import packages of lower layers only; the README's layout section draws it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("", "errors", "progress", "models", "_atomic", "_fingerprint", "_vispy"),  # "" is the top-level __init__
    ("synthetic",),
    ("io",),
    ("tiling",),
    ("stain",),
    ("encoders",),
    ("features",),
    ("cohort",),
    ("mil",),
    ("analysis",),
    ("diagnostics",),
    ("widgets", "benchmarking", "_reader", "_sample_data"),
    ("demo",),
    ("cli_progress",),  # the command line's progress display, used by cli alone
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# single-module units: importing them by module is importing their front
MODULES = {"errors", "_atomic", "_fingerprint", "_reader", "_sample_data", "demo", "cli"}


@dataclass(frozen=True)
class Edge:
    """One import of ``names`` from module ``target`` (dotted, below the plugin) at ``where``."""

    source: str  # importing unit
    target: str
    names: tuple[str, ...]
    where: str  # file:line

    @property
    def target_unit(self) -> str:
        return self.target.split(".")[0]


def unit_of(path: Path, root: Path) -> str:
    """The package (or top-level module) a file belongs to; "" for the top-level ``__init__``."""
    parts = path.relative_to(root).with_suffix("").parts
    if parts == ("__init__",):
        return ""
    return parts[0]


def _absolute(node: ast.ImportFrom, path: Path, root: Path) -> str | None:
    """The imported module as a dotted path below the plugin ("" for the plugin itself), else None."""
    if node.level == 0:
        module = node.module or ""
        if module == "napari_wsirobust":
            return ""
        return module.removeprefix("napari_wsirobust.") if module.startswith("napari_wsirobust.") else None
    here = list(path.relative_to(root).with_suffix("").parts)
    base = here[:-1]  # a module's package; for an __init__ the package itself
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def edges_of(root: Path) -> list[Edge]:
    """Every import between two different units of the plugin under ``root``."""
    edges = []
    for path in sorted(root.rglob("*.py")):
        source = unit_of(path, root)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import) and any(
                a.name.startswith("napari_wsirobust.") for a in node.names
            ):
                for alias in node.names:
                    target = alias.name.removeprefix("napari_wsirobust.")
                    if target.split(".")[0] != source:
                        edges.append(Edge(source, target, (), f"{path}:{node.lineno}"))
            elif isinstance(node, ast.ImportFrom):
                target = _absolute(node, path, root)
                if target is None:
                    continue
                if target == "" and source != "":  # `from .. import name`: the unit is the name
                    for alias in node.names:
                        if alias.name != source:
                            unit = alias.name if alias.name in RANK else ""
                            edges.append(Edge(source, unit, (alias.name,), f"{path}:{node.lineno}"))
                elif target.split(".")[0] != source:
                    names = tuple(a.name for a in node.names)
                    edges.append(Edge(source, target, names, f"{path}:{node.lineno}"))
    return edges


def problems(root: Path) -> list[str]:
    """One line per import that breaks the layers, skips a front or takes a private name."""
    found = []
    units = {unit_of(p, root) for p in root.rglob("*.py")}
    for unit in sorted(units - set(RANK)):
        found.append(f"{unit or '__init__'}: not placed in LAYERS (give it a layer in the package graph)")
    for edge in edges_of(root):
        src, dst = RANK.get(edge.source), RANK.get(edge.target_unit)
        if src is None or dst is None:
            continue
        if dst >= src:
            found.append(
                f"{edge.where}: {edge.source or '__init__'} (layer {src}) imports {edge.target} "
                f"(layer {dst}); only lower layers may be imported"
            )
        unit = edge.target_unit
        if edge.target != unit and unit not in MODULES and not unit.startswith("_"):
            found.append(f"{edge.where}: imports {edge.target}; import from the front {unit} instead")
        private = [n for n in edge.names if n.startswith("_") and n != "__version__"]
        if private and unit and not unit.startswith("_"):
            found.append(f"{edge.where}: imports private {', '.join(private)} from {edge.target}")
    return found


def test_every_package_import_runs_down_the_layers_through_a_front() -> None:
    found = problems(PACKAGE)
    assert not found, "package graph broken:\n" + "\n".join(found)


def test_the_layers_cover_the_package() -> None:
    units = {unit_of(p, PACKAGE) for p in PACKAGE.rglob("*.py")}
    assert units <= set(RANK), sorted(units - set(RANK))
    assert len(RANK) == sum(len(names) for names in LAYERS)  # no unit in two layers


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param({"io/__init__.py": "from ..tiling import Scope\n"}, "only lower layers", id="upwards"),
        pytest.param(
            {"mil/a.py": "from ..stain.profile import StainProfile\n"}, "front stain", id="no-front"
        ),
        pytest.param({"mil/a.py": "from ..stain import _basis\n"}, "private _basis", id="private"),
        pytest.param({"shiny/__init__.py": ""}, "not placed", id="unplaced"),
        pytest.param(
            {"stain/a.py": "def f():\n    from napari_wsirobust.diagnostics import x\n"},
            "only lower layers",
            id="lazy-absolute",
        ),
    ],
)
def test_the_checker_finds_each_kind_of_problem(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    root = tmp_path / "napari_wsirobust"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
        init = (root / name).parent / "__init__.py"
        if not init.exists():
            init.write_text("")
    found = problems(root)
    assert any(expected in line for line in found), found
    assert all(str(root) in line or "not placed" in line for line in found)


def test_a_clean_tree_passes(tmp_path: Path) -> None:
    root = tmp_path / "napari_wsirobust"
    for name, text in {
        "__init__.py": "",
        "io/__init__.py": "from .slide import open_slide\n",
        "io/slide.py": "def open_slide(): ...\n",
        "tiling/__init__.py": "from ..io import open_slide\nfrom .. import errors\n",
        "errors.py": "",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    assert problems(root) == []
