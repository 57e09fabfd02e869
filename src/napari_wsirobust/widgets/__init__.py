"""The napari docks (Qt/magicgui; thin: they build requests, run compute in workers, show results).

The docks are imported on first use, so napari opening one (Slide info) does not import the others
and the analysis stack behind them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["AnalyseWidget", "RobustnessWidget", "SlideInfoWidget", "TrainWidget"]

_MODULES = {
    "AnalyseWidget": ".analyse",
    "RobustnessWidget": ".robustness",
    "SlideInfoWidget": ".slide_info",
    "TrainWidget": ".train",
}


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_MODULES[name], __name__), name)
