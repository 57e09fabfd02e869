"""A linear-time replacement for vispy's parsing of shader variables, the largest part of the first
paint of a new overlay layer on software OpenGL.

Each time vispy builds a shader program (every new visual, at its first draw) it lists the program's
uniforms, attributes and varyings with ``Program._parse_variables_from_code``. That method first drops
``//`` comments with ``re.sub(r"(.*)(//.*)", r"\\1", code, flags=re.M)``: on a line without ``//`` the
greedy pattern backtracks from every position, so the cost grows with the square of the line length.
A new top-tiles Shapes layer builds four programs, one of them 86,000 characters long; parsing them
took about 97 of the 229 ms of the layer's first paint (an ad-hoc profile on 2 cores with Mesa
llvmpipe, 2026-11-23; ``benchmarks/bench_responsiveness.py`` measures the effect while panning).

:func:`install_fast_shader_parse` swaps in a method built on :func:`variables_in`, which strips the
comments line by line (same result: each line loses the text from its *last* ``//``, as the greedy
pattern does) and then matches vispy's own variable patterns. Before installing it checks, on shader
code with the awkward cases, that it gives exactly what vispy's method gives; where it does not
(another vispy), or vispy lacks what it needs, nothing is changed.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

_state: dict[str, Any] = {"installed": False}

# Keyword in the source -> kind vispy records (``in``/``out`` are GLSL 3 spellings of the GLSL 1 kinds).
_KINDS = (
    ("uniform", "uniform"),
    ("attribute", "attribute"),
    ("varying", "varying"),
    ("const", "const"),
    ("in", "attribute"),
    ("out", "varying"),
)

# Shader source exercising what the parse must get right: comments after code, several "//" on one
# line, commented-out declarations, arrays, precision qualifiers, defaults, GLSL 3 in/out.
SELF_CHECK_CODE = """
uniform vec4 u_color; // colour // of the mesh
// uniform float u_commented;
uniform highp float u_scale = 1.5;
uniform mat4 u_mats[3];
attribute vec2 a_position;  // in pixels
varying vec4 v_color;
const float PI = 3.14159;
in vec3 a_normal;
out vec4 frag_out;
void main() { gl_Position = vec4(a_position, 0.0, 1.0); } // done
float plain_value; int  trailing_spaces_here   ;
"""


def strip_line_comments(code: str) -> str:
    """``code`` with each line cut at its last ``//`` (lines without one kept as they are)."""
    lines = code.split("\n")
    return "\n".join(line[: line.rfind("//")] if "//" in line else line for line in lines)


def variables_in(code: str, patterns: dict[str, Any]) -> dict[str, tuple[str, str, str, int]]:
    """name -> (kind, GLSL type, name, array size or -1) for the declarations ``patterns`` (vispy's
    ``REGEX_VAR``) find in ``code``; an array also gets one entry per element, as vispy records them."""
    found: dict[str, tuple[str, str, str, int]] = {}
    code = strip_line_comments(code)
    for keyword, kind in _KINDS:
        for match in patterns[keyword].finditer(code):
            gtype, name, size = match.group("type"), match.group("name"), match.group("size")
            count = int(size) if size else -1
            if count >= 1:
                for i in range(count):
                    element = f"{name}[{i}]"
                    found[element] = (kind, gtype, element, -1)
            found[name] = ("uniform_array" if count >= 1 else kind, gtype, name, count)
    return found


def _matches_vispy(original: Any, patterns: dict[str, Any], code: str) -> bool:
    """Whether :func:`variables_in` gives what vispy's own method gives for ``code``."""
    probe = SimpleNamespace(_shaders=[SimpleNamespace(code=code)], _code_variables={})
    try:
        original(probe, update_variables=False)
    except Exception:  # another vispy whose method needs more than this probe has
        return False
    return dict(probe._code_variables) == variables_in(code, patterns)


def install_fast_shader_parse() -> bool:
    """Make vispy parse shader variables with :func:`variables_in` (idempotent, process-wide). Returns
    True when installed; False, changing nothing, when vispy lacks the method or its patterns or the
    self-check on :data:`SELF_CHECK_CODE` finds any difference."""
    if _state["installed"]:
        return True
    try:
        from vispy.gloo import program
    except ImportError:
        return False
    original = getattr(getattr(program, "Program", None), "_parse_variables_from_code", None)
    patterns = getattr(program, "REGEX_VAR", None)
    if original is None or not isinstance(patterns, dict) or not all(k in patterns for k, _ in _KINDS):
        return False
    if not _matches_vispy(original, patterns, SELF_CHECK_CODE):
        return False

    def parse_variables(self: Any, update_variables: bool = True) -> None:
        self._code_variables = variables_in("\n\n".join(shader.code for shader in self._shaders), patterns)
        if update_variables:
            self._process_pending_variables()

    program.Program._parse_variables_from_code = parse_variables
    _state["installed"] = True
    _state["original"] = original
    return True


def original_parse() -> Any:
    """vispy's own method, once :func:`install_fast_shader_parse` has replaced it (else None)."""
    return _state.get("original")
