"""Checkpoints: round trip, refusal of mismatched features and of pickle, atomic saves, and refusal of
every inconsistent or damaged model folder before anything is built."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from napari_wsirobust.mil import (
    CheckpointConfig,
    CheckpointError,
    GatedAttentionMIL,
    HeadConfig,
    checkpoint_check,
    load_checkpoint,
    save_checkpoint,
)
from napari_wsirobust.mil import checkpoint as ckpt
from napari_wsirobust.mil.model import parameter_shapes


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
    with pytest.raises(CheckpointError, match="model.safetensors is not a complete safetensors file"):
        load_checkpoint(tmp_path / "m")


# --- a model folder is user input: each bad folder is made from a good one and refused whole ---------


@dataclass(frozen=True)
class BadFolder:
    """A good saved model changed by ``spoil`` (given its version folder); the refusal says ``message``."""

    id: str
    spoil: Callable[[Path], object]
    message: str


def _edit_config(folder: Path, **changes: Any) -> None:
    data = json.loads((folder / "config.json").read_text())
    data.update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def _edit_head(folder: Path, **changes: Any) -> None:
    data = json.loads((folder / "config.json").read_text())
    data["head"].update(changes)
    (folder / "config.json").write_text(json.dumps(data))


def _edit_tensors(folder: Path, edit: Callable[[dict[str, torch.Tensor]], object]) -> None:
    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def _edit_header(folder: Path, edit: Callable[[dict[str, Any]], Any]) -> None:
    """Rewrite the JSON header of model.safetensors, keeping its data bytes."""
    path = folder / "model.safetensors"
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    header = edit(header) or header
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + raw[8 + n :])


def _write_bytes(folder: Path, edit: Callable[[bytes], bytes], name: str = "model.safetensors") -> None:
    path = folder / name
    path.write_bytes(edit(path.read_bytes()))


def _drop(name: str) -> Callable[[dict[str, torch.Tensor]], object]:
    return lambda state: state.pop(name)


def _drop_extras(state: dict[str, torch.Tensor]) -> None:
    for name in [k for k in state if k.startswith("extra.")]:
        del state[name]


def _add(name: str, tensor: torch.Tensor) -> Callable[[dict[str, torch.Tensor]], object]:
    return lambda state: state.update({name: tensor})


INCONSISTENT = "the folder is inconsistent - re-save or re-train the model"
DAMAGED = "the file is damaged - re-save or re-train the model"
BAD_FOLDERS = [
    BadFolder(
        "unknown-colour",
        lambda f: _edit_config(f, color="display-p3"),
        "config.json has colour 'display-p3'; expected one of as-scanned, srgb",
    ),
    # config.json disagrees with the tensor shapes
    BadFolder(
        "hidden-dim-1e9",
        lambda f: _edit_head(f, hidden_dim=10**9),
        "config.json says hidden_dim=1000000000 but model.safetensors has projection.0.weight of shape "
        f"(16, 12); {INCONSISTENT}",
    ),
    BadFolder(
        "hidden-dim-negative",
        lambda f: _edit_head(f, hidden_dim=-16),
        "config.json says hidden_dim=-16 but model.safetensors has projection.0.weight of shape (16, 12)",
    ),
    BadFolder(
        "hidden-dim-zero",
        lambda f: _edit_head(f, hidden_dim=0),
        "config.json says hidden_dim=0 but model.safetensors has projection.0.weight",
    ),
    BadFolder(
        "attention-dim",
        lambda f: _edit_head(f, attention_dim=9),
        "config.json says attention_dim=9 but model.safetensors has attention_v.weight of shape (8, 16)",
    ),
    BadFolder(
        "in-dim",
        lambda f: (_edit_head(f, in_dim=13), _edit_config(f, embed_dim=13)),
        "config.json says in_dim=13 but model.safetensors has projection.0.weight of shape (16, 12)",
    ),
    BadFolder(
        "n-classes",
        lambda f: (_edit_head(f, n_classes=3), _edit_config(f, label_names=["a", "b", "c"])),
        "config.json says n_classes=3 but model.safetensors has classifier.weight of shape (2, 16)",
    ),
    BadFolder(
        "no-instance-classifier",
        lambda f: _edit_head(f, instance_classifier=False),
        "config.json says instance_classifier=false but model.safetensors holds instance_classifier.bias, "
        "which this head does not have",
    ),
    BadFolder(
        "attention-w-shape",
        lambda f: _edit_tensors(f, _add("attention_w.weight", torch.zeros(3, 8))),
        "model.safetensors has attention_w.weight of shape (3, 8) where the model needs (1, 8)",
    ),
    # missing, extra or ill-typed tensors
    BadFolder(
        "missing-tensor",
        lambda f: _edit_tensors(f, _drop("classifier.bias")),
        f"model.safetensors has no tensor classifier.bias; {INCONSISTENT}",
    ),
    BadFolder(
        "missing-instance-classifier",
        lambda f: _edit_tensors(f, _drop("instance_classifier.weight")),
        "config.json says instance_classifier=true but model.safetensors has no tensor "
        "instance_classifier.weight",
    ),
    BadFolder(
        "extra-tensor",
        lambda f: _edit_tensors(f, _add("foo.weight", torch.zeros(2))),
        "model.safetensors holds foo.weight, which this head does not have",
    ),
    BadFolder(
        "unknown-extra",
        lambda f: _edit_tensors(f, _add("extra.bogus", torch.zeros(12))),
        "model.safetensors holds an unknown tensor extra.bogus",
    ),
    BadFolder(
        "site-norm-half-pair",
        lambda f: _edit_tensors(f, _drop("extra.site_norm.site.A.std")),
        "model.safetensors holds extra.site_norm.site.A.mean but not extra.site_norm.site.A.std",
    ),
    BadFolder(
        "site-norm-width",
        lambda f: _edit_tensors(f, _add("extra.site_norm.pooled.mean", torch.zeros(5))),
        "config.json says embed_dim=12 but model.safetensors has extra.site_norm.pooled.mean of shape (5,)",
    ),
    BadFolder(
        "integer-weights",
        lambda f: _edit_tensors(f, _add("classifier.bias", torch.zeros(2, dtype=torch.int64))),
        f"model.safetensors stores classifier.bias as I64, not floating point; {DAMAGED}",
    ),
    # config values of the wrong type or out of range
    BadFolder(
        "hidden-dim-string",
        lambda f: _edit_head(f, hidden_dim="16"),
        f'config.json has head.hidden_dim="16", which is not an integer; {DAMAGED}',
    ),
    BadFolder(
        "hidden-dim-float",
        lambda f: _edit_head(f, hidden_dim=16.0),
        "config.json has head.hidden_dim=16.0, which is not an integer",
    ),
    BadFolder(
        "hidden-dim-bool",
        lambda f: _edit_head(f, hidden_dim=True),
        "config.json has head.hidden_dim=true, which is not an integer",
    ),
    BadFolder(
        "instance-classifier-string",
        lambda f: _edit_head(f, instance_classifier="yes"),
        'config.json has head.instance_classifier="yes", which is not true/false',
    ),
    BadFolder(
        "dropout-out-of-range",
        lambda f: _edit_head(f, dropout=1.5),
        f"config.json has dropout=1.5, outside 0..1; {DAMAGED}",
    ),
    BadFolder(
        "dropout-nan",
        lambda f: _edit_head(f, dropout=float("nan")),
        "config.json has dropout=nan, outside 0..1",
    ),
    BadFolder(
        "unknown-head-setting",
        lambda f: _edit_head(f, depth=3),
        "config.json has an unknown head setting 'depth'",
    ),
    BadFolder(
        "no-head", lambda f: _edit_config(f, head=None), "config.json has head=null, which is not an object"
    ),
    BadFolder(
        "no-in-dim",
        lambda f: _write_bytes(f, lambda b: b.replace(b'"in_dim": 12,', b""), "config.json"),
        f"config.json lacks head.in_dim; {DAMAGED}",
    ),
    BadFolder(
        "embed-dim-disagrees-with-extras",
        lambda f: _edit_config(f, embed_dim=13),
        "config.json says embed_dim=13 but model.safetensors has extra.site_norm.pooled.mean of shape (12,)",
    ),
    BadFolder(
        "embed-dim-disagrees-with-in-dim",
        lambda f: (_edit_tensors(f, _drop_extras), _edit_config(f, embed_dim=13)),
        f"config.json says embed_dim=13 but in_dim=12; {INCONSISTENT}",
    ),
    BadFolder(
        "labels-not-a-list",
        lambda f: _edit_config(f, label_names="normal,tumour"),
        'config.json has label_names="normal,tumour", which is not a list',
    ),
    BadFolder(
        "labels-disagree",
        lambda f: _edit_config(f, label_names=["a", "b", "c"]),
        "config.json says n_classes=2 but names 3 labels",
    ),
    BadFolder(
        "labels-repeat",
        lambda f: _edit_config(f, label_names=["a", "a"]),
        "config.json has label_names ['a', 'a'], not distinct names",
    ),
    BadFolder(
        "format-version-string",
        lambda f: _edit_config(f, format_version="1"),
        'config.json has format_version="1", which is not an integer',
    ),
    BadFolder(
        "tiling-unusable",
        lambda f: _edit_config(f, tiling={"tile_size": 2}),
        "config.json has an unusable tiling entry (tile_size must be at least 8 px, got 2)",
    ),
    BadFolder(
        "tiling-unknown-key",
        lambda f: _edit_config(f, tiling={"tile_sz": 224}),
        "config.json has an unusable tiling entry",
    ),
    BadFolder(
        "harmonise-unusable",
        lambda f: _edit_config(f, harmonise={"site": "C"}),
        "config.json has an unusable harmonise entry (harmonisation entry has no 'reference' profile)",
    ),
    # config.json that is not JSON or not an object
    BadFolder(
        "config-not-json",
        lambda f: (f / "config.json").write_text("{nope"),
        "config.json cannot be read as JSON (Expecting property name",
    ),
    BadFolder(
        "config-not-object",
        lambda f: (f / "config.json").write_text("[1, 2]"),
        f"config.json is not a JSON object; {DAMAGED}",
    ),
    BadFolder(
        "config-missing",
        lambda f: (f / "config.json").unlink(),
        "config.json cannot be read as JSON ([Errno 2]",
    ),
    # damaged safetensors files
    BadFolder(
        "truncated",
        lambda f: _write_bytes(f, lambda b: b[:-10]),
        "model.safetensors is not a complete safetensors file (truncated: tensor ",
    ),
    BadFolder(
        "truncated-to-nothing",
        lambda f: _write_bytes(f, lambda b: b[:5]),
        "model.safetensors is not a complete safetensors file (truncated: 5 bytes, too short",
    ),
    BadFolder(
        "header-past-end",
        lambda f: _write_bytes(f, lambda b: (10**12).to_bytes(8, "little") + b[8:]),
        "its header length (1000000000000 bytes) points past the end of the file",
    ),
    BadFolder(
        "header-not-json",
        lambda f: _write_bytes(f, lambda b: b[:8] + b"\xff" * 20 + b[28:]),
        "model.safetensors is not a complete safetensors file (its header is not JSON",
    ),
    BadFolder(
        "header-not-object",
        lambda f: _edit_header(f, lambda h: [h]),
        "(its header is not a JSON object)",
    ),
    BadFolder(
        "header-shape-lies",
        lambda f: _edit_header(f, lambda h: h["projection.0.weight"].update(shape=[10**9, 12])),
        "(tensor projection.0.weight of shape (1000000000, 12) (F32) does not match its 768 data bytes)",
    ),
    BadFolder(
        "header-offsets-overlap",
        lambda f: _edit_header(f, lambda h: h["classifier.bias"].update(data_offsets=[0, 8])),
        "data overlaps another or leaves a gap",
    ),
    BadFolder(
        "trailing-bytes",
        lambda f: _write_bytes(f, lambda b: b + b"\0" * 4),
        "(4 bytes after the last tensor belong to none)",
    ),
    # the CURRENT pointer
    BadFolder(
        "pointer-outside",
        lambda f: (f.parent / "CURRENT").write_text("../elsewhere"),
        "CURRENT names '../elsewhere', which is not a version folder inside it",
    ),
    BadFolder(
        "pointer-binary",
        lambda f: (f.parent / "CURRENT").write_bytes(b"\xff\xfe\x00"),
        "CURRENT is unreadable",
    ),
]


def _save_good(model_dir: Path) -> Path:
    """A good model with per-site standardisation statistics; returns its version folder."""
    config = _config()
    extras = {
        "site_norm.pooled.mean": torch.zeros(12),
        "site_norm.pooled.std": torch.ones(12),
        "site_norm.site.A.mean": torch.zeros(12),
        "site_norm.site.A.std": torch.ones(12),
        "site_norm.site.B.mean": torch.zeros(12),
        "site_norm.site.B.std": torch.ones(12),
    }
    return save_checkpoint(_model(config, 0), config, model_dir, extras)


def _forbid_building(monkeypatch: pytest.MonkeyPatch) -> None:
    """From now on, fail the test if a head is built or weights are read (the folder must be refused
    from its config and header alone)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a head was built or weights were read for an inconsistent folder")

    monkeypatch.setattr(GatedAttentionMIL, "__init__", refuse)
    monkeypatch.setattr(ckpt, "load_file", refuse)


def test_the_colour_mode_is_saved_and_read_back(tmp_path: Path) -> None:
    config = _config()
    config.color = "srgb"
    save_checkpoint(_model(config, 0), config, tmp_path / "m")
    assert load_checkpoint(tmp_path / "m")[1].color == "srgb"
    assert _config().color == "as-scanned"


def test_a_good_folder_with_extras_loads_and_saves_again(tmp_path: Path) -> None:
    from napari_wsirobust.mil import TrainedHead

    first = _save_good(tmp_path / "m")
    second = _save_good(tmp_path / "m")  # a second save with extras replaces the first version
    assert first.name.startswith("v") and second.name.startswith("v") and first != second
    assert [p.name for p in (tmp_path / "m").iterdir() if p.is_dir()] == [second.name]
    head = TrainedHead.load(tmp_path / "m")
    assert head.standardiser is not None and sorted(head.standardiser.stats) == ["A", "B"]


@pytest.mark.parametrize("case", BAD_FOLDERS, ids=lambda c: c.id)
def test_a_bad_folder_is_refused_naming_it_and_the_disagreement(
    case: BadFolder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    version = _save_good(tmp_path / "m")
    case.spoil(version)
    _forbid_building(monkeypatch)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(tmp_path / "m")
    assert type(info.value) is CheckpointError
    message = str(info.value)
    assert str(tmp_path / "m") in message and case.message in message, message
    assert "\n" not in message


def test_sizes_beyond_a_million_are_refused_even_when_the_file_agrees(tmp_path: Path) -> None:
    """Range checks come after the shape checks (which name the value the file contradicts); a head
    whose file agrees with an absurd size is still refused."""
    version = _save_good(tmp_path / "m")
    data = asdict(ckpt.CheckpointConfig.from_dict(json.loads((version / "config.json").read_text())))
    data["head"]["hidden_dim"] = 2_000_000
    with pytest.raises(CheckpointError, match=r"config.json has hidden_dim=2000000, outside 1..1000000"):
        checkpoint_check.check_values(version, data)


def test_a_zero_size_that_the_file_agrees_with_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _forbid_building(monkeypatch)
    config = _config()
    config.head.attention_dim = 0
    state = {name: torch.zeros(shape) for name, shape in parameter_shapes(asdict(config.head)).items()}
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(state, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(config.to_json())
    with pytest.raises(CheckpointError, match=r"m: config.json has attention_dim=0, outside 1..1000000"):
        load_checkpoint(folder)


def test_the_config_types_cover_every_head_setting() -> None:
    assert set(checkpoint_check.HEAD_TYPES) == {f.name for f in fields(HeadConfig)}
    top = {f.name for f in fields(ckpt.CheckpointConfig)} - {"head"}
    assert set(checkpoint_check.TOP_TYPES) - {"head"} == top


def test_predict_on_an_inconsistent_folder_exits_2_without_allocating(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from napari_wsirobust import cli

    version = _save_good(tmp_path / "m")
    _edit_head(version, hidden_dim=10**9)
    _forbid_building(monkeypatch)
    code = cli.main(
        ["predict", str(tmp_path / "m"), str(tmp_path / "slide.svs"), "--out", str(tmp_path / "p.csv")]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert err == (
        f"error: {version}: config.json says hidden_dim=1000000000 but model.safetensors has "
        f"projection.0.weight of shape (16, 12); {INCONSISTENT}\n"
    )
    assert not (tmp_path / "p.csv").exists()
