"""Calibration of a head's slide probabilities: fitted on validation slides, it keeps the ranking, moves
the calls to where the classes separate, is saved with the head and applied by every prediction."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.mil import CheckpointError, ModelCard, TrainedHead, auc_ovr
from napari_wsirobust.mil.calibration import Calibration, fit_calibration
from napari_wsirobust.models import demo_model_dir

# under-confident, well ranked: what the robust losses leave (tumour ~0.55, normal ~0.40)
P_TUMOUR = np.array([0.55, 0.58, 0.60, 0.52, 0.42, 0.40, 0.45, 0.38])
LABELS = [1, 1, 1, 1, 0, 0, 0, 0]


def _probs(p: np.ndarray) -> np.ndarray:
    return np.stack([1 - p, p], axis=1)


def test_fitted_on_separable_slides_it_sharpens_and_moves_the_threshold_keeping_the_ranking() -> None:
    calibration = fit_calibration(_probs(P_TUMOUR), LABELS)
    assert calibration is not None and calibration.n_slides == 8
    assert calibration.temperature < 1  # more confident
    calibrated = calibration.apply(_probs(P_TUMOUR))[:, 1]
    np.testing.assert_array_equal(np.argsort(calibrated), np.argsort(P_TUMOUR))  # ranking unchanged
    assert auc_ovr(np.array(LABELS), calibration.apply(_probs(P_TUMOUR))) == 1.0
    assert ((calibrated > 0.5) == np.array(LABELS, bool)).all()  # every call right; 0.45 was wrong at 0.5
    # Platt's smoothed targets keep it finite on perfectly separated slides: no call made certain
    assert calibrated.min() > 0.05 and calibrated.max() < 0.95
    np.testing.assert_allclose(calibration.apply(_probs(P_TUMOUR)).sum(axis=1), 1.0, rtol=1e-6)


def test_no_calibration_without_a_slide_of_every_class() -> None:
    assert fit_calibration(_probs(P_TUMOUR[:4]), LABELS[:4]) is None
    assert fit_calibration(np.zeros((0, 2)), []) is None


def test_round_trip_and_malformed_entries() -> None:
    calibration = Calibration(0.25, (0.0, 0.4), 8)
    assert Calibration.from_dict(json.loads(json.dumps(calibration.to_dict()))) == calibration
    with pytest.raises(ValueError, match="positive"):
        Calibration.from_dict({"temperature": 0, "bias": [0, 0]})


def test_a_head_applies_its_calibration_and_refuses_a_malformed_one(tmp_path: Path) -> None:
    head = TrainedHead.load(demo_model_dir())
    rng = np.random.default_rng(0)
    features = rng.normal(size=(12, head.config.embed_dim)).astype(np.float32)
    raw = head.uncalibrated().predict(features).probabilities
    folder = tmp_path / "model"
    shutil.copytree(demo_model_dir(), folder, ignore=shutil.ignore_patterns("__*"))
    data = json.loads((folder / "config.json").read_text())
    data["calibration"] = {"temperature": 0.5, "bias": [0.0, -1.0], "n_slides": 8}
    (folder / "config.json").write_text(json.dumps(data))
    calibrated_head = TrainedHead.load(folder)
    expected = Calibration(0.5, (0.0, -1.0), 8).apply(raw)
    np.testing.assert_allclose(calibrated_head.predict(features).probabilities, expected, rtol=1e-5)
    assert "temperature 0.500, offsets +0.000, -1.000, fitted on 8 validation slides" in (
        ModelCard.load(folder).to_text()
    )
    data["calibration"] = {"temperature": -1, "bias": [0.0, 0.0]}
    (folder / "config.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="calibration is malformed"):
        TrainedHead.load(folder).predict(features)
