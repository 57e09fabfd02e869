"""A guard against napari crashing after layers are removed on Mesa OpenGL.

With napari 0.9.2, vispy 0.17 and Mesa 22.3 (llvmpipe and softpipe alike), removing a Shapes layer from
a shown viewer and then adding a layer (an image, points, another Shapes layer) kills the whole process
with a segmentation fault inside ``glDrawArrays`` at a later paint; nothing of the session survives.
Points layers showing text do the same, and so does removing this plugin's overlays (heatmap, tile
scores, top tiles) and then opening the next slide. A plain image, Labels, Vectors, Surface or Tracks
layer was removed safely, and hiding a layer is always safe. Skipping the GL deletion of each kind of
object in turn pins it on the deletion of *shader programs*: with programs never deleted every
sequence tried runs on (buffers and textures are still freed).

So :func:`guard_gl_program_deletion` (called by this plugin's reader, sample data and widgets) makes
vispy skip ``glDeleteProgram`` when the OpenGL implementation is Mesa; elsewhere it deletes as
before. A removed layer then leaves its compiled programs behind: in
``benchmarks/bench_layer_removal.py`` the resident size grew by 4.48 MiB per add-and-remove of a
Shapes layer with text, where a Points layer without text (no crash, no guard needed) grows it by
1.47 MiB. Mesa drivers for GPUs share the GL front end with llvmpipe and so get the guard too;
whether they crash was not verified (no such machine here).

It patches ``vispy.gloo.glir.GlirProgram.delete``, process-wide, once; where that does not exist
(another vispy) it does nothing and returns False.
"""

from __future__ import annotations

from typing import Any

_state: dict[str, Any] = {"installed": False, "mesa": None, "kept": 0}


def _is_mesa(gl: Any) -> bool:
    """Whether the current context's OpenGL is Mesa's (checked once, at the first program deletion,
    when vispy has the context current)."""
    if _state["mesa"] is None:
        try:
            version = str(gl.glGetParameter(gl.GL_VERSION))
        except Exception:  # no context: do not guess, delete as usual this time
            return False
        _state["mesa"] = "Mesa" in version
    return bool(_state["mesa"])


def guard_gl_program_deletion() -> bool:
    """Install the guard (idempotent); True when vispy's program deletion is guarded."""
    if _state["installed"]:
        return True
    try:
        from vispy.gloo import gl, glir
    except ImportError:
        return False
    original = getattr(getattr(glir, "GlirProgram", None), "delete", None)
    if original is None:
        return False

    def delete(self: Any) -> None:
        if _is_mesa(gl):
            _state["kept"] += 1
            return
        original(self)

    glir.GlirProgram.delete = delete
    _state["installed"] = True
    return True


def kept_programs() -> int:
    """How many GL programs the guard has left undeleted in this process."""
    return int(_state["kept"])
