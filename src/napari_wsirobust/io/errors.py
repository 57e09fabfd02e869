"""Typed errors of slide access; every message names the file and says what to do."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import WsiRobustError


class SlideError(WsiRobustError):
    """Base class of every slide access problem; ``path`` is the offending file."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name}: {reason}")


class SlideNotFoundError(SlideError, FileNotFoundError):
    """The file does not exist."""


class SlideReadError(SlideError):
    """The file exists but no backend can read it as a slide (damaged, truncated, another format)."""


class NotASlideError(SlideError):
    """The file is a readable image but not an RGB brightfield slide that analysis can use."""


class MissingMPPWarning(UserWarning):
    """The slide has no usable pixel size; it is shown at 1 pixel = 1 unit."""
