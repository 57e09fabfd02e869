"""Scanner-swap what-if on a generated slide with the bundled demo head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_wsirobust.analysis import AnalysisRequest, Resources
from napari_wsirobust.diagnostics.stain import estimate_site_profiles, estimate_slide_profile
from napari_wsirobust.diagnostics.whatif import load_profiles, save_profiles, scanner_whatif
from napari_wsirobust.mil.workflow import drive
from napari_wsirobust.models import DEMO_MODEL_DIR
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide
from napari_wsirobust.tiling import Scope


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tumour slide on scanner B (analysed) and other tissue on scanners A and C (profiles)."""
    folder = tmp_path_factory.mktemp("whatif")
    out = {}
    for name, seed, scanner in (("B", 41, "B"), ("A", 42, "A"), ("C", 43, "C")):
        tissue = TissueSpec(seed=seed, tumour=True, width=1024, height=768, tumour_fraction=0.4, atypia=1.0)
        out[name] = folder / f"{name}.tiff"
        write_synthetic_slide(SyntheticSlideSpec.make(tissue, scanner), out[name])
    return out


def test_whatif_drift_is_small_for_the_own_profile_and_larger_for_others(slides, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    profiles = estimate_site_profiles({"A": [str(slides["A"])], "C": [str(slides["C"])]})
    profiles["B (own)"] = estimate_slide_profile(str(slides["B"]))
    saved = save_profiles(profiles, tmp_path / "profiles.json")
    assert load_profiles(saved) == profiles
    request = AnalysisRequest(
        str(slides["B"]), str(DEMO_MODEL_DIR), Scope.whole(), cache_dir=str(tmp_path / "cache")
    )
    result = drive(scanner_whatif(request, load_profiles(saved), Resources()))
    n = len(result.base.grid)
    by_name = {o.name: o for o in result.outcomes}
    assert set(by_name) == {"A", "C", "B (own)"}
    for outcome in result.outcomes:
        assert outcome.drift.shape == outcome.attention_change.shape == outcome.flipped.shape == (n,)
        assert np.isclose(outcome.prediction.probabilities.sum(), 1.0)
        assert np.all(np.abs(outcome.attention_change) <= 1.0)
    own = np.median(by_name["B (own)"].drift)
    # measured: median drift 0.009 (own), 0.037 (A), 0.118 (C)
    assert own < 0.5 * np.median(by_name["A"].drift) and own < 0.5 * np.median(by_name["C"].drift)
    table = result.table()
    assert [r["profile"] for r in table] == ["original", "A", "C", "B (own)"]
    assert 0.0 <= result.spread <= 1.0


def test_whatif_refuses_no_profiles_and_bad_files(slides, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    request = AnalysisRequest(str(slides["B"]), str(DEMO_MODEL_DIR))
    with pytest.raises(ValueError, match="no target profiles"):
        drive(scanner_whatif(request, {}))
    bad = tmp_path / "bad.json"
    bad.write_text('{"profiles": {"A": {"nonsense": 1}}}')
    with pytest.raises(ValueError, match="not a profiles file"):
        load_profiles(bad)
