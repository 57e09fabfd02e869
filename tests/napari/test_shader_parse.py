"""The linear-time shader-variable parse (_vispy.shader_parse) gives exactly what vispy's own gives."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("vispy")

from vispy.gloo import program  # noqa: E402

from napari_wsirobust._vispy import shader_parse  # noqa: E402


def _vispy_parse(code: str) -> dict:
    """vispy's own parse of ``code`` (its method, even after ours is installed)."""
    original = shader_parse.original_parse() or program.Program._parse_variables_from_code
    probe = SimpleNamespace(_shaders=[SimpleNamespace(code=code)], _code_variables={})
    original(probe, update_variables=False)
    return dict(probe._code_variables)


@pytest.mark.parametrize(
    "code",
    [
        "uniform vec4 a; // x // y\nvoid main() {}",
        "// uniform float hidden;\nuniform float shown;",
        "varying vec2 v; //\n//\n\nattribute vec3 p;//tight",
        shader_parse.SELF_CHECK_CODE,
    ],
)
def test_comment_stripping_matches_the_greedy_pattern(code: str) -> None:
    assert shader_parse.strip_line_comments(code) == re.sub(r"(.*)(//.*)", r"\1", code, flags=re.M)


def test_variables_match_vispy_on_the_self_check_code() -> None:
    found = shader_parse.variables_in(shader_parse.SELF_CHECK_CODE, program.REGEX_VAR)
    assert found == _vispy_parse(shader_parse.SELF_CHECK_CODE)
    assert found["u_mats"] == ("uniform_array", "mat4", "u_mats", 3)
    assert found["u_mats[2]"] == ("uniform", "mat4", "u_mats[2]", -1)
    assert found["a_normal"][0] == "attribute" and found["frag_out"][0] == "varying"
    assert "u_commented" not in found


def test_install_refuses_when_vispy_differs(monkeypatch) -> None:
    vispys = shader_parse.original_parse() or program.Program._parse_variables_from_code

    def another_vispy(self, update_variables=True):  # a later vispy that also records consts differently
        vispys(self, update_variables)
        self._code_variables = {k: v for k, v in self._code_variables.items() if v[0] != "const"}

    monkeypatch.setattr(shader_parse, "_state", {"installed": False})
    monkeypatch.setattr(program.Program, "_parse_variables_from_code", another_vispy)
    assert not shader_parse.install_fast_shader_parse()
    assert program.Program._parse_variables_from_code is another_vispy
    monkeypatch.setattr(program.Program, "_parse_variables_from_code", vispys)
    monkeypatch.setattr(program, "REGEX_VAR", {"uniform": program.REGEX_VAR["uniform"]})  # patterns missing
    assert not shader_parse.install_fast_shader_parse()
    assert program.Program._parse_variables_from_code is vispys


def _programs(node) -> list:
    """Every vispy program under a layer's visual node that has shader code."""
    found = []
    for visual in [node, *getattr(node, "_subvisuals", [])]:
        prog = getattr(visual, "_program", None)
        if prog is not None and getattr(prog, "_shaders", None):
            found.append(prog)
    return found


@pytest.mark.napari
def test_napari_overlays_draw_with_the_same_variables(make_napari_viewer, qtbot) -> None:
    assert shader_parse.install_fast_shader_parse()
    assert program.Program._parse_variables_from_code is not shader_parse.original_parse()
    viewer = make_napari_viewer(show=True)
    heat = viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), colormap="inferno")
    tiles = viewer.add_shapes(
        [np.array([[2.0, 2], [2, 12], [12, 12], [12, 2]])],
        shape_type="rectangle",
        features={"rank": [1]},
        text={"string": "{rank}", "color": "#00ff66"},
        edge_color="#00ff66",
        face_color="transparent",
    )
    qtbot.wait(300)  # first paint: every program is built (with our parse) and drawn
    screenshot = viewer.screenshot(canvas_only=True, flash=False)
    assert screenshot[..., :3].std() > 0  # the overlays drew something
    canvas = viewer.window._qt_viewer.canvas
    checked = 0
    for layer in (heat, tiles):
        for prog in _programs(canvas.layer_to_visual[layer].node):
            code = "\n\n".join(shader.code for shader in prog._shaders)
            assert prog._code_variables == _vispy_parse(code)
            checked += 1
    assert checked >= 3  # image, faces mesh and text at least
