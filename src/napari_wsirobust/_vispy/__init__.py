"""Process-wide patches of vispy for napari on Mesa OpenGL (private; no Qt, no napari import).

:func:`install_vispy_patches` is the one call the reader, the sample data and the docks make: it keeps
removing layers from crashing napari (:mod:`.gl_guard`) and makes new overlays' first paints cheaper
(:mod:`.shader_parse`). Both patch once, check themselves and leave vispy alone where they do not fit.
"""

from __future__ import annotations

from .gl_guard import guard_gl_program_deletion
from .shader_parse import install_fast_shader_parse

__all__ = ["install_vispy_patches"]


def install_vispy_patches() -> None:
    """Install both patches (idempotent; each does nothing where vispy differs from what it expects)."""
    guard_gl_program_deletion()
    install_fast_shader_parse()
