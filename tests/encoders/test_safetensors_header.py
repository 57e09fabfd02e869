"""The safetensors header reader: names, dtypes and shapes from the header alone, and every way a
header can lie about the file refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from napari_wsirobust.encoders import SafetensorsHeaderError, TensorEntry, read_safetensors_header


def _write(path: Path, header: dict[str, Any], data: bytes) -> Path:
    text = json.dumps(header).encode()
    path.write_bytes(len(text).to_bytes(8, "little") + text + data)
    return path


def test_a_saved_file_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    tensors = {"b": torch.zeros(2, 3), "a": torch.zeros(4, dtype=torch.float16), "empty": torch.zeros(0, 5)}
    save_file(tensors, str(path), metadata={"format": "x"})
    header = read_safetensors_header(path)
    assert header == {
        "a": TensorEntry("F16", (4,)),
        "b": TensorEntry("F32", (2, 3)),
        "empty": TensorEntry("F32", (0, 5)),
    }


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}


@pytest.mark.parametrize(
    ("header", "data", "message"),
    [
        ({"a": {**GOOD["a"], "dtype": "F33"}}, bytes(8), "tensor a has an unknown dtype 'F33'"),
        ({"a": {**GOOD["a"], "shape": [-2]}}, bytes(8), "tensor a has a malformed shape [-2]"),
        ({"a": {**GOOD["a"], "shape": [True]}}, bytes(8), "tensor a has a malformed shape [True]"),
        ({"a": {**GOOD["a"], "data_offsets": [0]}}, bytes(8), "tensor a has malformed data_offsets [0]"),
        ({"a": {**GOOD["a"], "shape": [3]}}, bytes(8), "tensor a of shape (3,) (F32) does not match its 8"),
        ({"a": [1]}, bytes(8), "its header entry for a is not an object"),
        ({**GOOD, "__metadata__": {"k": 1}}, bytes(8), "its __metadata__ is not an object of strings"),
        (GOOD, bytes(4), "truncated: tensor a ends at data byte 8 but the file holds only 4"),
        (GOOD, bytes(12), "4 bytes after the last tensor belong to none"),
        ({"a": {**GOOD["a"], "data_offsets": [4, 12]}}, bytes(12), "tensor a's data overlaps another"),
    ],
    ids=[
        "dtype",
        "negative-dim",
        "bool-dim",
        "offsets",
        "size",
        "entry",
        "metadata",
        "short",
        "trailing",
        "gap",
    ],
)
def test_a_lying_header_is_refused(tmp_path: Path, header: dict[str, Any], data: bytes, message: str) -> None:
    path = _write(tmp_path / "w.safetensors", header, data)
    with pytest.raises(SafetensorsHeaderError) as info:
        read_safetensors_header(path)
    assert message in str(info.value)
