"""The MIL heads a session can analyse with: the bundled demo head plus any trained or loaded one.

The Train widget adds the heads it trains, the Analyse widget lists them; ``changed`` tells
listeners (psygnal signal, no Qt).
"""

from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from ..errors import InputError

DEMO_NAME = "bundled demo model"


class ModelRegistry:
    changed = Signal()

    def __init__(self) -> None:
        self._paths: dict[str, str] = {}

    def names(self) -> list[str]:
        self._add_demo()
        return list(self._paths)

    def path(self, name: str) -> str:
        self._add_demo()
        if name not in self._paths:
            raise InputError(f"no model named {name!r}; add its folder first")
        return self._paths[name]

    def add(self, name: str, path: str | Path) -> str:
        """Register ``path`` under ``name`` (made unique unless it is the same folder); returns the name."""
        path = str(Path(path).resolve())
        for existing, p in self._paths.items():
            if p == path:
                return existing
        unique, n = name, 2
        while unique in self._paths:
            unique, n = f"{name} ({n})", n + 1
        self._paths[unique] = path
        self.changed.emit()
        return unique

    def _add_demo(self) -> None:
        if DEMO_NAME in self._paths:
            return
        from ..models import DEMO_MODEL_DIR

        if (DEMO_MODEL_DIR / "model.safetensors").exists():
            self._paths = {DEMO_NAME: str(DEMO_MODEL_DIR), **self._paths}


MODELS = ModelRegistry()
