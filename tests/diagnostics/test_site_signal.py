"""Site signal on the synthetic cohort: the robust head's slide representation carries less scanner
signal than the plain head's.

1. The default shortcut-benchmark cohort (88 slides; generating and embedding it takes about 5
   minutes on 2 CPU cores): the between-scanner share of the representation's variance (eta^2) on the
   test slides where scanner and label are independent. The cross-validated linear probe saturates
   near 1.0 for both heads on this cohort (BENCHMARKS.md, shortcut benchmark), so it is not asserted.
2. The same cohort with paired re-scans (one training patient per label also scanned on the other
   two scanners; the other slides are the same files, so their features come from the shared cache):
   there the probe itself is lower for the robust-paired head than for the plain head (BENCHMARKS.md,
   shortcut benchmark with paired re-scans: 0.54 vs 0.98 over 5 seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.benchmarking import ShortcutConfig, prepare
from napari_wsirobust.benchmarking.shortcut import run_one
from napari_wsirobust.mil import DEFAULT_PRESET, TrainConfig
from napari_wsirobust.synthetic import CohortConfig

pytestmark = pytest.mark.slow
SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def feature_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("site_signal_features")


def test_robust_head_representation_carries_less_scanner_signal(tmp_path: Path, feature_cache: Path) -> None:
    config = ShortcutConfig(work_dir=str(tmp_path), workers=2, cache_dir=str(feature_cache))
    data = prepare(config, log=lambda _: None)
    plain = [run_one(data, "plain", s, TrainConfig())["site_variance"] for s in SEEDS]
    robust = [run_one(data, DEFAULT_PRESET, s, TrainConfig())["site_variance"] for s in SEEDS]
    assert all(r < p for r, p in zip(robust, plain)), (plain, robust)  # seed by seed
    assert np.mean(plain) - np.mean(robust) > 0.15, (plain, robust)  # benchmark: 0.47 vs 0.20


def test_with_paired_rescans_the_probe_itself_is_lower(tmp_path: Path, feature_cache: Path) -> None:
    cohort = CohortConfig(rescanned_train_patients=1)
    config = ShortcutConfig(work_dir=str(tmp_path), cohort=cohort, workers=2, cache_dir=str(feature_cache))
    data = prepare(config, log=lambda _: None)
    plain = [run_one(data, "plain", s, TrainConfig()) for s in SEEDS]
    paired = [run_one(data, "robust-paired", s, TrainConfig()) for s in SEEDS]
    probe_plain = [r["site_predictability"] for r in plain]
    probe_paired = [r["site_predictability"] for r in paired]
    assert all(q < p for q, p in zip(probe_paired, probe_plain)), (probe_plain, probe_paired)
    assert np.mean(probe_plain) - np.mean(probe_paired) > 0.25, (probe_plain, probe_paired)
    # and not by giving up accuracy on the scanner-shifted test
    assert min(r["auc_shifted"] for r in paired) >= min(r["auc_shifted"] for r in plain)
