"""The napari docks (Qt/magicgui; thin: they build requests, run compute in workers, show results)."""

from __future__ import annotations

from .analyse import AnalyseWidget
from .robustness import RobustnessWidget
from .slide_info import SlideInfoWidget
from .train import TrainWidget

__all__ = ["AnalyseWidget", "RobustnessWidget", "SlideInfoWidget", "TrainWidget"]
