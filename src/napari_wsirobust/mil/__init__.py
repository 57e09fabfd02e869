"""Attention-based multiple-instance learning heads over tile embeddings (no Qt): the model, robust
losses, the trainer, checkpoints and their model cards, prediction, bags and the train/predict
workflows over a cohort.
"""

from __future__ import annotations

from .bags import Bag, load_bags
from .checkpoint import CheckpointConfig, CheckpointError, HeadConfig, load_checkpoint, save_checkpoint
from .metrics import (
    auc_ovr,
    balanced_accuracy,
    expected_calibration_error,
    site_predictability,
    site_probe_chance,
    site_variance_share,
)
from .model import GatedAttentionMIL, MILOutput
from .model_card import ModelCard
from .predict import (
    SCANNER_COLUMNS,
    BagPrediction,
    TrainedHead,
    evaluate,
    scanner_cells,
    write_predictions_csv,
)
from .site_norm import SiteStandardiser
from .train import (
    AUTO_PRESET,
    DEFAULT_PRESET,
    LOSS_PRESETS,
    EpochReport,
    FeatureSource,
    TrainConfig,
    Trainer,
    TrainingError,
    resolve_preset,
    train_to_completion,
)
from .workflow import (
    MetricRow,
    Stage,
    TrainingRun,
    check_harmonisation,
    check_losses_fit_cohort,
    drive,
    extract_config_for,
    feature_source,
    metrics_table,
    predict_slides,
    slide_scanner_check,
    train_cohort,
    train_table,
)

__all__ = [
    "AUTO_PRESET",
    "Bag",
    "BagPrediction",
    "SCANNER_COLUMNS",
    "CheckpointConfig",
    "CheckpointError",
    "DEFAULT_PRESET",
    "EpochReport",
    "FeatureSource",
    "GatedAttentionMIL",
    "HeadConfig",
    "LOSS_PRESETS",
    "MILOutput",
    "MetricRow",
    "ModelCard",
    "SiteStandardiser",
    "Stage",
    "TrainConfig",
    "TrainedHead",
    "Trainer",
    "TrainingError",
    "TrainingRun",
    "auc_ovr",
    "balanced_accuracy",
    "check_harmonisation",
    "check_losses_fit_cohort",
    "drive",
    "evaluate",
    "expected_calibration_error",
    "extract_config_for",
    "feature_source",
    "load_bags",
    "load_checkpoint",
    "metrics_table",
    "predict_slides",
    "resolve_preset",
    "save_checkpoint",
    "site_predictability",
    "site_probe_chance",
    "site_variance_share",
    "train_cohort",
    "train_table",
    "train_to_completion",
    "scanner_cells",
    "slide_scanner_check",
    "write_predictions_csv",
]
