"""The bundled demo head: loads as data, fits the default encoder, tells tumour from normal."""

from __future__ import annotations

from pathlib import Path

import pytest

from napari_wsirobust.features import slide_features
from napari_wsirobust.mil import TrainedHead, extract_config_for
from napari_wsirobust.models import demo_model_dir
from napari_wsirobust.synthetic import SyntheticSlideSpec, TissueSpec, write_synthetic_slide


def test_demo_model_is_safetensors_and_json() -> None:
    folder = demo_model_dir()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("__")) == [
        "config.json",
        "model.safetensors",
    ]
    assert (folder / "model.safetensors").stat().st_size < 2 * 2**20
    head = TrainedHead.load(folder)
    assert head.config.encoder_name == "effnet-lite0-imagenet" and head.config.embed_dim == 1280
    assert head.label_names == ["normal", "tumour"]


@pytest.mark.slow
def test_demo_model_separates_tumour_from_normal(tmp_path: Path) -> None:
    head = TrainedHead.load(demo_model_dir())
    extract = extract_config_for(head, str(tmp_path / "cache"))  # its encoder, tiling and harmonisation
    probs = {}
    for tumour in (False, True):
        # scanner B: the demo head must not call tumour by scanner A's colours
        spec = SyntheticSlideSpec.make(
            TissueSpec(seed=11, tumour=tumour, width=2048, height=1536, tumour_fraction=0.3, atypia=0.5), "B"
        )
        path = tmp_path / f"{'tumour' if tumour else 'normal'}.tiff"
        write_synthetic_slide(spec, path)
        feats = slide_features(str(path), extract)
        assert feats is not None
        probs[tumour] = head.predict(feats[0].features).probabilities[1]
    assert probs[True] > 0.5 > probs[False], probs
