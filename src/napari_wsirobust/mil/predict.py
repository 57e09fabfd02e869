"""Running a trained head: on a bag of features, on slides, and on a whole evaluation set.

:class:`TrainedHead` bundles the model, its config (encoder, labels, tiling) and the per-site
standardiser when it was trained with one. It is what the CLI, the napari widgets and the benchmark
call; features are checked against the encoder the head was trained on before anything runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._atomic import atomic_write_csv
from ..errors import InputError
from ..stain import Harmonisation, ScannerCheck, StainProfile, check_scanner, profile_from_dict
from ..tiling import TilingConfig
from .bags import Bag
from .calibration import Calibration
from .checkpoint import CheckpointConfig, CheckpointError, load_checkpoint_with_extras
from .metrics import (
    auc_ovr,
    balanced_accuracy,
    bootstrap_ci,
    expected_calibration_error,
    localisation_auc,
    per_site_auc,
)
from .model import GatedAttentionMIL
from .site_norm import SiteStandardiser


@dataclass
class BagPrediction:
    """A head's output for one bag of N tiles, as numpy arrays."""

    probabilities: np.ndarray  # (C,)
    attention: np.ndarray  # (N,), sums to 1
    representation: np.ndarray  # (H,)
    instance_probabilities: np.ndarray | None  # (N, C)

    @property
    def label_index(self) -> int:
        return int(self.probabilities.argmax())


@dataclass
class TrainedHead:
    model: GatedAttentionMIL
    config: CheckpointConfig
    standardiser: SiteStandardiser | None = None

    @classmethod
    def load(cls, model_dir: str | os.PathLike[str]) -> TrainedHead:
        model, config, extras = load_checkpoint_with_extras(model_dir)
        return cls(model, config, SiteStandardiser.from_tensors(extras))

    @property
    def label_names(self) -> list[str]:
        return self.config.label_names

    def tiling_config(self) -> TilingConfig:
        """The tiling the head's features were extracted with (the default when not recorded)."""
        return TilingConfig(**self.config.tiling) if self.config.tiling else TilingConfig()

    def harmonisation(self) -> Harmonisation | None:
        """The reference profile the head's tiles were re-rendered into before embedding (None: the
        slides as scanned); prediction must embed the same way."""
        return Harmonisation.from_dict(self.config.harmonise) if self.config.harmonise else None

    def calibration(self) -> Calibration | None:
        """The temperature and offsets fitted on the validation slides (None: the head's own output)."""
        if not self.config.calibration:
            return None
        try:
            return Calibration.from_dict(self.config.calibration)
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"the model's calibration is malformed ({exc}); re-train the model"
            ) from exc

    def uncalibrated(self) -> TrainedHead:
        """The same head without its calibration (for comparing the two)."""
        return TrainedHead(self.model, replace(self.config, calibration={}), self.standardiser)

    def site_profiles(self) -> dict[str, StainProfile]:
        """The training sites' colour profiles saved with the head (empty when it was saved without)."""
        saved = self.config.site_profiles or {}
        return {site: profile_from_dict(p, f"training site {site}'s profile") for site, p in saved.items()}

    def check_scanner(self, slide_profile: StainProfile) -> ScannerCheck | None:
        """How unlike every training site the slide's profile is (None: no site profiles saved)."""
        sites = self.site_profiles()
        return check_scanner(slide_profile, sites) if sites else None

    def check_features(self, encoder_name: str, embed_dim: int) -> None:
        self.config.check_features(encoder_name, embed_dim)

    @torch.no_grad()
    def predict(self, features: np.ndarray, site: str | None = None) -> BagPrediction:
        """Predict one bag of (N, D) features; ``site`` selects the per-site standardisation."""
        if features.ndim != 2 or features.shape[1] != self.config.embed_dim:
            raise InputError(
                f"expected (N, {self.config.embed_dim}) features from {self.config.encoder_name}, "
                f"got {features.shape}"
            )
        if len(features) == 0:
            raise InputError("no tiles to predict on (no tissue in the chosen scope?)")
        x = features.astype(np.float32)
        if self.standardiser is not None:
            x = self.standardiser.transform(x, site or "")
        self.model.eval()
        out = self.model.forward_details(torch.from_numpy(x)[None])
        inst = out.instance_logits
        probabilities = torch.softmax(out.logits, -1)[0].numpy()
        calibration = self.calibration()
        return BagPrediction(
            probabilities=calibration.apply(probabilities) if calibration is not None else probabilities,
            attention=out.attention[0].numpy(),
            representation=out.representation[0].numpy(),
            instance_probabilities=torch.softmax(inst, -1)[0].numpy() if inst is not None else None,
        )

    def predict_bags(self, bags: list[Bag], view: int | None = None) -> list[BagPrediction]:
        """Predictions for bags (``view``: use that scanner-swapped view's features instead)."""
        return [self.predict(b.features if view is None else b.views[view], b.row.site) for b in bags]


def evaluate(
    head: TrainedHead, bags: list[Bag], n_bootstrap: int = 1000, seed: int = 0
) -> tuple[dict[str, Any], list[BagPrediction]]:
    """Metrics of ``head`` on ``bags`` (see :mod:`napari_wsirobust.mil.metrics`) and predictions."""
    predictions = head.predict_bags(bags)
    y = np.array([b.label for b in bags])
    probs = np.stack([p.probabilities for p in predictions])
    patients = [b.row.patient for b in bags]
    auc = auc_ovr(y, probs)
    lo, hi = bootstrap_ci(auc_ovr, y, probs, patients, n_bootstrap, seed)
    metrics: dict[str, Any] = {
        "n_slides": len(bags),
        "auc": auc,
        "auc_ci95": [lo, hi],
        "balanced_accuracy": balanced_accuracy(y, probs.argmax(1)),
        "ece": expected_calibration_error(y, probs),
        "per_site_auc": per_site_auc(y, probs, [b.row.site for b in bags]),
        "localisation_auc": localisation_auc(
            [p.attention for p in predictions], [b.tumour_fraction for b in bags]
        ),
    }
    return metrics, predictions


def write_predictions_csv(
    path: str | os.PathLike[str],
    slides: list[str],
    predictions: list[BagPrediction],
    label_names: list[str],
    scanner_checks: list[ScannerCheck | None] | None = None,
) -> Path:
    """One row per slide: slide, predicted label, probability of each label, number of tiles, and the
    slide's scanner check (``profile_distance`` to the nearest training site, ``unlike_training`` 0/1;
    blank where the model saved no site profiles)."""
    header = ["slide", "prediction", *[f"p_{n}" for n in label_names], "n_tiles", *SCANNER_COLUMNS]
    checks = scanner_checks if scanner_checks is not None else [None] * len(slides)
    rows = (
        [
            slide,
            label_names[p.label_index],
            *[f"{v:.6f}" for v in p.probabilities],
            len(p.attention),
            *scanner_cells(check),
        ]
        for slide, p, check in zip(slides, predictions, checks)
    )
    return atomic_write_csv(path, header, rows)


SCANNER_COLUMNS = ("profile_distance", "unlike_training")


def scanner_cells(check: ScannerCheck | None) -> list[str]:
    """The :data:`SCANNER_COLUMNS` cells of one slide (blank without a check)."""
    if check is None:
        return ["", ""]
    return [f"{check.distance:.4f}", str(int(check.unlike_training))]
