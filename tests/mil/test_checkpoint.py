"""Checkpoints: round trip, refusal of mismatched features and of pickle, atomic saves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from napari_wsirobust.mil import (
    CheckpointConfig,
    CheckpointError,
    HeadConfig,
    load_checkpoint,
    save_checkpoint,
)
from napari_wsirobust.mil import checkpoint as ckpt


def _config(in_dim: int = 12) -> CheckpointConfig:
    return CheckpointConfig(
        head=HeadConfig(in_dim=in_dim, n_classes=2, hidden_dim=16, attention_dim=8),
        encoder_name="effnet-lite0-imagenet",
        embed_dim=in_dim,
        label_names=["normal", "tumour"],
        tiling={"tile_size": 224, "target_mpp": 0.5},
        losses={"contrastive": 0.5},
        metrics={"val_auc": 0.9},
    )


def _model(config: CheckpointConfig, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return config.head.build().eval()


def test_round_trip(tmp_path: Path) -> None:
    config = _config()
    model = _model(config, 0)
    save_checkpoint(model, config, tmp_path / "m")
    loaded, loaded_config = load_checkpoint(tmp_path / "m")
    x = torch.randn(2, 5, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
    assert loaded_config.label_names == ["normal", "tumour"]
    assert loaded_config.losses == {"contrastive": 0.5} and loaded_config.metrics["val_auc"] == 0.9
    versions = [p for p in (tmp_path / "m").iterdir() if p.is_dir()]
    assert len(versions) == 1 and (tmp_path / "m" / "CURRENT").read_text() == versions[0].name


def test_harmonised_model_records_its_reference_and_a_newer_format(tmp_path: Path) -> None:
    from dataclasses import replace

    from napari_wsirobust.mil import TrainedHead
    from napari_wsirobust.stain import Harmonisation, StainProfile

    reference = StainProfile(
        (0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (240.0, 238.0, 242.0), (0.5, 0.3), (1.6, 1.1), 61.0, 9000, 65
    )
    harmonise = Harmonisation(reference, "C")
    plain = _config()
    assert plain.format_version == ckpt.PLAIN_FORMAT_VERSION == 1  # older plugins still read these
    config = replace(plain, harmonise=harmonise.to_dict())
    assert config.format_version == ckpt.FORMAT_VERSION == 2  # an older plugin refuses it, never ignores it
    save_checkpoint(_model(config, 0), config, tmp_path / "m")
    head = TrainedHead.load(tmp_path / "m")
    assert head.harmonisation() == harmonise and head.config.format_version == 2
    save_checkpoint(_model(plain, 0), plain, tmp_path / "p")
    assert TrainedHead.load(tmp_path / "p").harmonisation() is None


def test_mismatched_encoder_or_dimension_is_refused(tmp_path: Path) -> None:
    config = _config()
    config.check_features("effnet-lite0-imagenet", 12)
    with pytest.raises(
        CheckpointError, match=r"trained on effnet-lite0-imagenet features \(12-d\).*h0-mini \(1536-d\)"
    ):
        config.check_features("h0-mini", 1536)


def test_pickle_files_are_refused(tmp_path: Path) -> None:
    pickle_file = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, pickle_file)
    with pytest.raises(CheckpointError, match="refusing to load a pickle-based file"):
        load_checkpoint(pickle_file)
    folder = tmp_path / "legacy"
    folder.mkdir()
    torch.save({"w": torch.zeros(2)}, folder / "model.pth")
    with pytest.raises(CheckpointError, match="refusing to unpickle"):
        load_checkpoint(folder)


def test_killed_save_leaves_previous_model_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = _config()
    first = _model(config, 1)
    save_checkpoint(first, config, tmp_path / "m")
    second = _model(config, 2)
    real_replace = os.replace

    def killed_at_commit(src, dst):  # type: ignore[no-untyped-def]
        if Path(dst).name == ckpt.POINTER_FILE:
            raise KeyboardInterrupt("process killed just before the commit point")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", killed_at_commit)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(second, config, tmp_path / "m")
    monkeypatch.setattr(ckpt.os, "replace", real_replace)
    loaded, _ = load_checkpoint(tmp_path / "m")
    x = torch.randn(1, 4, 12)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), first(x))
    save_checkpoint(second, config, tmp_path / "m")  # the next save succeeds and cleans up
    loaded, _ = load_checkpoint(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), second(x))
    assert len([p for p in (tmp_path / "m").iterdir() if p.is_dir()]) == 1


def test_damaged_or_missing_checkpoints_are_explained(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="model folder not found"):
        load_checkpoint(tmp_path / "nothing")
    config = _config()
    version = save_checkpoint(_model(config, 0), config, tmp_path / "m")
    (version / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="weights do not load"):
        load_checkpoint(tmp_path / "m")
