"""Encoder registry: architectures, the offline default's ImageNet evidence, safe weight loading."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data

from napari_wsirobust.encoders import (
    EncoderWeightsError,
    TileEncoder,
    create_encoder,
    get_encoder_spec,
    list_encoders,
)
from napari_wsirobust.encoders.model import build_backbone
from napari_wsirobust.encoders.weights import (
    effnet_lite0_package_file,
    load_state_dict_file,
    map_effnet_lite0_state,
)

REQUIRED = {"h0-mini", "h-optimus-0", "uni", "uni2-h", "virchow2", "phikon-v2", "prov-gigapath"}


def test_registry_names_the_required_encoders() -> None:
    assert REQUIRED | {"effnet-lite0-imagenet"} <= set(list_encoders())
    with pytest.raises(ValueError, match="unknown encoder 'nope'; valid encoders: .*h0-mini"):
        get_encoder_spec("nope")


@pytest.mark.parametrize("name", sorted(REQUIRED | {"effnet-lite0-imagenet", "h0-mini-cls"}))
def test_every_architecture_builds_with_its_documented_dimension(name: str) -> None:
    spec = get_encoder_spec(name)
    with torch.device("meta"):  # shapes only: no memory for the billion-parameter models
        encoder = TileEncoder(spec, build_backbone(spec), "random-init")
        out = encoder(torch.zeros(2, 3, spec.input_size, spec.input_size))
    assert tuple(out.shape) == (2, spec.embed_dim)


def test_h0_mini_matches_its_model_card() -> None:
    spec = get_encoder_spec("h0-mini")
    assert spec.hub_id == "hf-hub:bioptimus/H0-mini"
    assert spec.mean == (0.707223, 0.578729, 0.703617)
    assert spec.std == (0.211883, 0.230117, 0.177517)
    assert (spec.input_size, spec.target_mpp, spec.embed_dim) == (224, 0.5, 1536)
    with torch.device("meta"):
        backbone = build_backbone(spec)
        tokens = backbone.forward_features(torch.zeros(1, 3, 224, 224))
    assert backbone.num_prefix_tokens == 5 == spec.num_prefix_tokens  # CLS + 4 registers
    assert tuple(tokens.shape) == (1, 261, 768)  # 1 + 4 + 16 x 16 patches of 14 px
    n_params = sum(p.numel() for p in backbone.parameters())
    assert 80e6 < n_params < 90e6  # ViT-B


def test_h0_mini_local_checkpoint_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    reference = create_encoder("h0-mini", random_init=True)
    path = tmp_path / "h0-mini.safetensors"
    save_file({k: v.contiguous() for k, v in reference.backbone.state_dict().items()}, str(path))
    loaded = create_encoder("h0-mini", weights=path)
    assert loaded.info.weights_id.startswith("file:")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        a, b = reference(x), loaded(x)
    assert tuple(b.shape) == (2, 1536)
    torch.testing.assert_close(a, b)
    # the embedding is CLS followed by the mean of the 256 patch tokens
    with torch.no_grad():
        tokens = loaded.backbone.forward_features(x)
    torch.testing.assert_close(b[:, :768], tokens[:, 0])
    torch.testing.assert_close(b[:, 768:], tokens[:, 5:].mean(dim=1))


def test_missing_weights_say_which_file_or_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WSIROBUST_H0_MINI_WEIGHTS", raising=False)
    with pytest.raises(EncoderWeightsError, match="WSIROBUST_H0_MINI_WEIGHTS=/path/to/weights"):
        create_encoder("h0-mini")
    monkeypatch.setenv("WSIROBUST_UNI_WEIGHTS", "/nowhere/uni.safetensors")
    with pytest.raises(EncoderWeightsError, match="WSIROBUST_UNI_WEIGHTS points at /nowhere"):
        create_encoder("uni")


def _imagenet_top1(model: torch.nn.Module, image: np.ndarray) -> int:
    tile = np.array(Image.fromarray(image).resize((224, 224), Image.Resampling.BILINEAR))
    x = torch.from_numpy(tile).float().div(255).permute(2, 0, 1)[None]
    x = (x - 0.5) / 0.5
    with torch.no_grad():
        return int(model(x).argmax())


def test_effnet_lite0_mapping_classifies_imagenet_images() -> None:
    """Real evidence the positional mapping is right: ImageNet top-1 of chelsea (tabby cat, 285)
    and coffee (espresso, 967)."""
    classifier = timm.create_model("tf_efficientnet_lite0", pretrained=False).eval()
    source = load_state_dict_file(effnet_lite0_package_file())
    classifier.load_state_dict(map_effnet_lite0_state(source, classifier.state_dict()))
    assert _imagenet_top1(classifier, data.chelsea()) == 285
    assert _imagenet_top1(classifier, data.coffee()) == 967
    encoder = create_encoder("effnet-lite0-imagenet")  # the registry's headless version
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        features = encoder(x)
        expected = classifier.forward_head(classifier.forward_features(x), pre_logits=True)
    assert tuple(features.shape) == (2, 1280)
    torch.testing.assert_close(features, expected)


def test_pickled_files_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(torch.nn.Linear(2, 2), path)  # a whole module: needs unpickling code objects
    with pytest.raises(EncoderWeightsError, match="weights-only"):
        load_state_dict_file(path)
    other = tmp_path / "model.ckpt"
    other.write_bytes(b"x")
    with pytest.raises(EncoderWeightsError, match="unsupported weights format"):
        load_state_dict_file(other)


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "wrong.safetensors"
    save_file({"foo.weight": torch.zeros(3)}, str(path))
    with pytest.raises(EncoderWeightsError, match="does not fit h0-mini"):
        create_encoder("h0-mini", weights=path)


def test_any_timm_model_with_a_local_file(tmp_path: Path) -> None:
    model = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "resnet18.pth"
    torch.save(model.state_dict(), path)
    encoder = create_encoder("timm:resnet18", weights=path)
    assert encoder.spec.embed_dim == 512
    with torch.no_grad():
        assert tuple(encoder(torch.zeros(1, 3, 224, 224)).shape) == (1, 512)
    with pytest.raises(ValueError, match="timm does not know"):
        create_encoder("timm:not-a-model", weights=path)
