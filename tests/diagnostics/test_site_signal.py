"""Issue 6 on the synthetic cohort: less of the robust head's slide representation is the scanner than
of the plain head's.

The default shortcut-benchmark cohort (88 slides; generating and embedding it takes about 5 minutes on
2 CPU cores). Measured as the between-scanner share of the representation's variance (eta^2) on the
test slides where scanner and label are independent. The cross-validated linear probe (site
predictability) is reported beside it but saturates near 1.0 for both heads on this cohort
(BENCHMARKS.md, shortcut benchmark), so it cannot show the difference and is not asserted here.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_wsirobust.mil.shortcut import ShortcutConfig, prepare, run_one
from napari_wsirobust.mil.train import DEFAULT_PRESET, TrainConfig

pytestmark = pytest.mark.slow


def test_robust_head_representation_carries_less_scanner_signal(tmp_path) -> None:
    data = prepare(ShortcutConfig(work_dir=str(tmp_path), workers=2), log=lambda _: None)
    seeds = (0, 1, 2)
    plain = [run_one(data, "plain", s, TrainConfig())["site_variance"] for s in seeds]
    robust = [run_one(data, DEFAULT_PRESET, s, TrainConfig())["site_variance"] for s in seeds]
    assert all(r < p for r, p in zip(robust, plain)), (plain, robust)  # seed by seed
    assert np.mean(plain) - np.mean(robust) > 0.15, (plain, robust)  # benchmark: 0.47 vs 0.20
