"""User-supplied encoder weights: a safetensors file is checked against the architecture from its
header, before a tensor is read; a PyTorch file whose shapes do not fit is refused, not a crash."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import torch
from safetensors.torch import save_file

from napari_wsirobust.encoders import EncoderWeightsError, create_encoder, get_encoder_spec
from napari_wsirobust.encoders.model import expected_state_shapes
from napari_wsirobust.encoders.weights import load_state_dict_file

NAME = "effnet-lite0-imagenet"
FITS = f"does not fit {NAME} (tf_efficientnet_lite0)"
FITS_RE = re.escape(FITS)


@pytest.fixture(scope="module")
def shapes() -> dict[str, tuple[int, ...]]:
    return expected_state_shapes(get_encoder_spec(NAME))


def _zeros(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {
        k: torch.zeros(s, dtype=torch.int64 if k.endswith("num_batches_tracked") else torch.float32)
        for k, s in shapes.items()
    }


def _never_read(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the tensors were read before the header was checked")

    monkeypatch.setattr(safetensors.torch, "load_file", refuse)


def test_a_wrong_shape_is_refused_from_the_header(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _zeros(shapes)
    state["conv_stem.weight"] = torch.zeros(1, 2)
    path = tmp_path / "wrong.safetensors"
    save_file(state, str(path))
    _never_read(monkeypatch)
    with pytest.raises(EncoderWeightsError) as info:
        create_encoder(NAME, weights=path)
    assert str(info.value) == (
        f"wrong.safetensors {FITS}: conv_stem.weight has shape (1, 2) where the model needs (32, 3, 3, 3)"
    )


def test_missing_and_unexpected_names_are_refused_from_the_header(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = _zeros(shapes)
    del state["bn1.weight"]
    state["head.extra"] = torch.zeros(3)
    path = tmp_path / "names.safetensors"
    save_file(state, str(path))
    _never_read(monkeypatch)
    with pytest.raises(
        EncoderWeightsError,
        match=rf"names.safetensors {FITS_RE}: 1 missing keys \(e.g. \['bn1.weight'\]\), "
        r"1 unexpected keys \(e.g. \['head.extra'\]\)",
    ):
        create_encoder(NAME, weights=path)


def test_a_pytorch_file_of_the_wrong_shape_is_an_encoder_error(
    tmp_path: Path, shapes: dict[str, tuple[int, ...]]
) -> None:
    state = _zeros(shapes)
    state["bn2.bias"] = torch.zeros(7)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(EncoderWeightsError, match=rf"wrong.pth {FITS_RE}: bn2.bias has shape \(7,\) where"):
        create_encoder(NAME, weights=path)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda b: b[:-3], "(truncated: tensor "),
        (lambda b: b[:6], "(truncated: 6 bytes, too short to hold the header length)"),
        (lambda b: (2**40).to_bytes(8, "little") + b[8:], "points past the end of the file"),
        (lambda b: b[:8] + b"\xff" * 8 + b[16:], "(its header is not JSON"),
    ],
    ids=["truncated", "too-short", "header-past-end", "header-not-json"],
)
def test_a_damaged_safetensors_file_is_refused_before_it_is_read(
    tmp_path: Path, damage: Any, message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "w.safetensors"
    save_file({"a": torch.zeros(3), "b": torch.ones(2, 2)}, str(path))
    path.write_bytes(damage(path.read_bytes()))
    _never_read(monkeypatch)
    with pytest.raises(EncoderWeightsError) as info:
        load_state_dict_file(path)
    assert str(info.value).startswith("w.safetensors: not a complete safetensors file (")
    assert message in str(info.value) and str(info.value).endswith("download or convert the weights again")
