"""A live plot of training: loss and validation AUC per epoch (matplotlib canvas for the dock)."""

from __future__ import annotations

from typing import Any

from ..mil import EpochReport


class TrainingPlot:
    """Two panels sharing the epoch axis: training loss (total) and validation AUC, best epoch marked."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 3.2), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(240)
        self._loss_ax, self._auc_ax = self.figure.subplots(2, 1, sharex=True)
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.val_aucs: list[float] = []
        self.best_epoch = 0
        self._draw()

    @property
    def widget(self) -> Any:
        return self.canvas

    def reset(self) -> None:
        self.epochs, self.losses, self.val_aucs, self.best_epoch = [], [], [], 0
        self._draw()

    def add(self, report: EpochReport) -> None:
        self.epochs.append(report.epoch)
        self.losses.append(report.losses.get("total", float("nan")))
        self.val_aucs.append(report.val_auc)
        self.best_epoch = report.best_epoch
        self._draw()

    def _draw(self) -> None:
        for ax in (self._loss_ax, self._auc_ax):
            ax.clear()
            ax.grid(alpha=0.3)
        self._loss_ax.set_ylabel("train loss")
        self._auc_ax.set_ylabel("val AUC")
        self._auc_ax.set_xlabel("epoch")
        self._auc_ax.set_ylim(0.0, 1.02)
        if self.epochs:
            self._loss_ax.plot(self.epochs, self.losses, "-o", ms=3, color="#1f77b4")
            self._auc_ax.plot(self.epochs, self.val_aucs, "-o", ms=3, color="#2ca02c")
            if self.best_epoch:
                for ax in (self._loss_ax, self._auc_ax):
                    ax.axvline(self.best_epoch, color="#d62728", ls="--", lw=1)
                self._auc_ax.set_title(f"best epoch {self.best_epoch}", fontsize=8)
        self.canvas.draw_idle()
