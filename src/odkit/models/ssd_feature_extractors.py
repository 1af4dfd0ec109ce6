"""SSD feature extractors: backbone + neck + the TF `preprocess` normalisation, by TF OD API type name.

`create_ssd_feature_extractor(type_name, ...)` accepts the TF2 Keras names and their TF1 aliases:

| type (TF2 Keras)                   | TF1 alias               | backbone                   | neck                 |
|------------------------------------|-------------------------|----------------------------|----------------------|
| ssd_resnet{50,101,152}_v1_fpn_keras| ssd_resnet*_v1_fpn      | torchvision resnet         | FPN (fpn {...})      |
| ssd_mobilenet_v1_keras             | ssd_mobilenet_v1        | MobileNet v1 (here)        | SSD extra layers     |
| ssd_mobilenet_v1_fpn_keras         | ssd_mobilenet_v1_fpn    | MobileNet v1               | FPN                  |
| ssd_mobilenet_v2_keras             | ssd_mobilenet_v2        | torchvision mobilenet_v2   | SSD extra layers     |
| ssd_mobilenet_v2_fpn_keras         | ssd_mobilenet_v2_fpn    | torchvision mobilenet_v2   | FPN-lite (depthwise) |
| ssd_efficientnet-b{0..7}_bifpn_keras| -                      | TF EfficientNet (here)     | BiFPN                |

Normalisation (TF `preprocess`): resnet subtracts [123.68, 116.779, 103.939]; mobilenet maps to [-1, 1];
efficientnet computes ((x / 255) - ImageNet mean) / ImageNet std. Inputs are RGB in [0, 255] (uint8 or float).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from odkit.errors import UnsupportedError
from odkit.models.backbones.efficientnet import EfficientNetBackbone
from odkit.models.backbones.mobilenet_v1 import MobileNetV1Backbone
from odkit.models.backbones.mobilenet_v2 import EXPAND13, MobileNetV2Backbone
from odkit.models.backbones.resnet import ResNetBackbone
from odkit.models.hyperparams import (
    L2_ATTR,
    L2_BIAS_ATTR,
    ConvHyperparams,
    activation_layer,
    default_hyperparams,
    freeze_batch_norm,
    init_weight,
    tag_l2,
)
from odkit.models.necks.bifpn import BiFPN
from odkit.models.necks.fpn import FPN
from odkit.models.necks.ssd_layers import SSDExtraLayers

ALIASES = {
    "ssd_mobilenet_v1": "ssd_mobilenet_v1_keras",
    "ssd_mobilenet_v2": "ssd_mobilenet_v2_keras",
    "ssd_mobilenet_v1_fpn": "ssd_mobilenet_v1_fpn_keras",
    "ssd_mobilenet_v2_fpn": "ssd_mobilenet_v2_fpn_keras",
    "ssd_resnet50_v1_fpn": "ssd_resnet50_v1_fpn_keras",
    "ssd_resnet101_v1_fpn": "ssd_resnet101_v1_fpn_keras",
    "ssd_resnet152_v1_fpn": "ssd_resnet152_v1_fpn_keras",
}
SUPPORTED = (
    "ssd_resnet50_v1_fpn_keras", "ssd_resnet101_v1_fpn_keras", "ssd_resnet152_v1_fpn_keras",
    "ssd_mobilenet_v1_keras", "ssd_mobilenet_v1_fpn_keras", "ssd_mobilenet_v2_keras",
    "ssd_mobilenet_v2_fpn_keras", *[f"ssd_efficientnet-b{i}_bifpn_keras" for i in range(8)],
)

_RESNET_MEANS = (123.68, 116.779, 103.939)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
# TF OD API defaults for the backbone regularizer when hyperparams are not overridden (slim-equivalent weight).
_DEFAULT_BACKBONE_L2 = {"resnet": 2e-4, "mobilenet": 4e-5}


@dataclass(frozen=True)
class FpnParams:
    min_level: int = 3
    max_level: int = 7
    additional_layer_depth: int = 256


@dataclass(frozen=True)
class BiFpnParams:
    min_level: int = 3
    max_level: int = 7
    num_iterations: int = 3
    num_filters: int = 64
    combine_method: str = "fast_attention"


def normalization(type_name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) in raw pixel units such that preprocess(x) == (x - mean) / std for this extractor type."""
    name = canonical_type(type_name)
    if name.startswith("ssd_resnet"):
        return _RESNET_MEANS, (1.0, 1.0, 1.0)
    if name.startswith("ssd_mobilenet"):
        return (127.5,) * 3, (127.5,) * 3
    return tuple(m * 255.0 for m in _IMAGENET_MEAN), tuple(s * 255.0 for s in _IMAGENET_STD)


def normalized_to_pixels(type_name: str, values: list[float]) -> list[float]:
    """Raw pixel values that this extractor's preprocess maps to `values` (the TF SSD pad value lives in
    normalised space: `SSDMetaArch.preprocess` normalises first, then resizes and pads)."""
    mean, std = normalization(type_name)
    return [v * s + m for v, m, s in zip(values, mean, std)]


def canonical_type(type_name: str, where: str | None = None) -> str:
    name = ALIASES.get(type_name, type_name)
    if name not in SUPPORTED:
        raise UnsupportedError(
            f"feature_extractor type {type_name!r} is not supported", where=where,
            hint="supported: " + ", ".join(SUPPORTED) + " (and TF1 aliases " + ", ".join(ALIASES) + ")",
            substitute="ssd_mobilenet_v1_fpn_keras" if "fpn" in type_name else "ssd_mobilenet_v2_keras")
    return name


def _apply_hyperparams(backbone: nn.Module, hp: ConvHyperparams) -> None:
    """override_base_feature_extractor_hyperparams: initializer, l2, batch norm and activation from hp."""
    for m in backbone.modules():
        if isinstance(m, nn.Conv2d):
            init_weight(m.weight, hp.initializer)
        elif isinstance(m, nn.BatchNorm2d) and hp.batch_norm is not None:
            m.eps = hp.batch_norm.epsilon
            m.momentum = 1.0 - hp.batch_norm.decay
            if not hp.batch_norm.scale:
                nn.init.ones_(m.weight)
                m.weight.requires_grad_(False)
            if not hp.batch_norm.center:
                m.bias.requires_grad_(False)
        for name, child in m.named_children():
            if isinstance(child, (nn.ReLU, nn.ReLU6, nn.SiLU)):
                setattr(m, name, activation_layer(hp.activation))
    tag_l2(backbone, hp.l2_weight)


class SSDFeatureExtractor(nn.Module):
    """preprocess(images) -> normalised float; forward(preprocessed) -> list of feature maps (fine to coarse)."""

    def __init__(self, type_name: str, backbone: nn.Module, neck: nn.Module, out_channels: list[int],
                 mean: tuple[float, ...], std: tuple[float, ...], pad_to_multiple: int = 1) -> None:
        super().__init__()
        self.type_name = type_name
        self.backbone = backbone
        self.neck = neck
        self.out_channels = out_channels
        self.pad_to_multiple = max(int(pad_to_multiple), 1)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("inv_std", 1.0 / torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() - self.mean) * self.inv_std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.pad_to_multiple
        if m > 1:
            h, w = x.shape[-2], x.shape[-1]
            x = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        feats = self.backbone(x)
        return self.neck(feats)


class _TakeLevels(nn.Module):
    """Neck for non-FPN SSD: pick backbone maps then add SSD extra layers."""

    def __init__(self, keys: list[int], extra: nn.Module) -> None:
        super().__init__()
        self.keys = keys
        self.extra = extra

    def forward(self, feats: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        return self.extra([feats[k] for k in self.keys])


def create_ssd_feature_extractor(
    type_name: str, hp: ConvHyperparams, *, depth_multiplier: float = 1.0, min_depth: int = 16,
    pad_to_multiple: int = 1, use_explicit_padding: bool = False, use_depthwise: bool = False,
    override_base_hyperparams: bool = False, fpn: FpnParams | None = None, bifpn: BiFpnParams | None = None,
    freeze_batchnorm: bool = False, num_layers: int = 6, where: str = "model.ssd.feature_extractor",
) -> SSDFeatureExtractor:
    """Build the extractor for a TF OD API `feature_extractor.type` (see the module table).

    num_layers (non-FPN MobileNet SSDs only, TF default 6): number of feature maps (2 backbone + extra layers).
    """
    name = canonical_type(type_name, where=f"{where}.type")
    if not 2 <= num_layers <= 6:
        raise UnsupportedError(f"num_layers {num_layers} is not supported", where=f"{where}.num_layers",
                               hint="use 2..6")
    if not name.startswith(("ssd_resnet", "ssd_mobilenet")):
        if bifpn is None:
            raise UnsupportedError(f"feature_extractor type {type_name!r} needs a bifpn block", where=where)
        return _create_efficientdet(name, hp, min_depth=min_depth, depth_multiplier=depth_multiplier,
                                    pad_to_multiple=pad_to_multiple, use_explicit_padding=use_explicit_padding,
                                    use_depthwise=use_depthwise, override_base_hyperparams=override_base_hyperparams,
                                    bifpn=bifpn, freeze_batchnorm=freeze_batchnorm, where=where)
    with_fpn = name.endswith("_fpn_keras")
    if with_fpn and fpn is None:
        raise UnsupportedError(f"feature_extractor type {type_name!r} needs a fpn block", where=where)
    family = "resnet" if name.startswith("ssd_resnet") else "mobilenet"
    backbone = _ssd_backbone(name, hp, depth_multiplier=depth_multiplier, min_depth=min_depth,
                             explicit_padding=use_explicit_padding, override_base_hyperparams=override_base_hyperparams)
    neck: nn.Module
    if with_fpn:
        neck = FPN(backbone.out_channels, fpn.min_level, fpn.max_level,
                   max(int(fpn.additional_layer_depth * depth_multiplier), min_depth), hp,
                   use_depthwise=use_depthwise, freeze_bn=freeze_batchnorm, explicit_padding=use_explicit_padding)
        out_channels = neck.out_channels
    else:  # MobileNet v1 / v2 SSD: two backbone maps, then the SSD extra layers
        levels = [4 if name.startswith("ssd_mobilenet_v1") else EXPAND13, 5]
        extra = SSDExtraLayers([backbone.out_channels[k] for k in levels], [512, 256, 256, 128][: num_layers - 2],
                               hp, depth_multiplier=depth_multiplier, min_depth=min_depth,
                               use_depthwise=use_depthwise, freeze_bn=freeze_batchnorm,
                               explicit_padding=use_explicit_padding)
        neck = _TakeLevels(levels, extra)
        out_channels = extra.out_channels

    if not getattr(backbone, "built_from_hyperparams", False):
        if override_base_hyperparams:
            _apply_hyperparams(backbone, hp)
        else:
            tag_l2(backbone, _DEFAULT_BACKBONE_L2[family])
    tag_l2(neck, hp.l2_weight)
    mean, std = normalization(name)
    extractor = SSDFeatureExtractor(name, backbone, neck, out_channels, mean, std, pad_to_multiple)
    if freeze_batchnorm:
        freeze_batch_norm(extractor)
    return extractor


def _ssd_backbone(name: str, hp: ConvHyperparams, *, depth_multiplier: float, min_depth: int,
                  explicit_padding: bool, override_base_hyperparams: bool) -> nn.Module:
    """The backbone of a ResNet / MobileNet SSD type (canonical name)."""
    m = re.fullmatch(r"ssd_resnet(\d+)_v1_fpn_keras", name)
    if m:
        return ResNetBackbone(int(m.group(1)))
    if name.startswith("ssd_mobilenet_v1"):
        base_hp = hp if override_base_hyperparams else _default_mobilenet_hp(hp)
        return MobileNetV1Backbone(base_hp, depth_multiplier, min_depth, explicit_padding=explicit_padding)
    # TF's FPN(-lite) extractor builds `_create_modified_mobilenet_config()` (last conv 256 filters) but never
    # passes it to the backbone: the last 1x1 conv keeps 1280 filters (as in the zoo checkpoints). Without FPN
    # the SSD extra layers start from the expanded layer 13 (want_expand13).
    return MobileNetV2Backbone(depth_multiplier, want_expand13=not name.endswith("_fpn_keras"),
                               explicit_padding=explicit_padding)


def _default_mobilenet_hp(hp: ConvHyperparams) -> ConvHyperparams:
    return default_hyperparams(l2_weight=_DEFAULT_BACKBONE_L2["mobilenet"], activation="RELU_6")



class EfficientDetFeatureExtractor(SSDFeatureExtractor):
    """TF `SSDEfficientNetBiFPNKerasFeatureExtractor.preprocess`: ((x / 255) - mean) / std, in that order."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.register_buffer("std", torch.tensor(_IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0 - self.mean) / self.std


def _create_efficientdet(name: str, hp: ConvHyperparams, *, min_depth: int, depth_multiplier: float,
                         pad_to_multiple: int, use_explicit_padding: bool, use_depthwise: bool,
                         override_base_hyperparams: bool, bifpn: BiFpnParams, freeze_batchnorm: bool,
                         where: str) -> SSDFeatureExtractor:
    """TF `SSDEfficientNetBiFPNKerasFeatureExtractor` (ssd_efficientnet-b{0..7}_bifpn_keras).

    As in TF: depth_multiplier must be 1, use_explicit_padding and use_depthwise are refused; BiFPN filters are
    max(num_filters, min_depth); the backbone keeps its own batch norm (momentum 0.99, eps 1e-3), swish and
    initialisers -- override_base_feature_extractor_hyperparams only replaces its weight decay by the
    conv_hyperparams l2 weight; freeze_batchnorm freezes the BiFPN's batch norms (TF does not pass it to the
    EfficientNet backbone, whose batch norms follow the training mode).
    """
    if depth_multiplier != 1.0:
        raise UnsupportedError(f"depth_multiplier {depth_multiplier} is not supported by {name}",
                               where=f"{where}.depth_multiplier", hint="use 1.0 (as the TF OD API requires)")
    for flag, value in (("use_explicit_padding", use_explicit_padding), ("use_depthwise", use_depthwise)):
        if value:
            raise UnsupportedError(f"{flag} is not supported by {name}", where=f"{where}.{flag}",
                                   hint="remove it (the TF OD API refuses it too)")
    if not 3 <= bifpn.min_level <= 5 or bifpn.max_level < bifpn.min_level:
        raise UnsupportedError(f"bifpn levels {bifpn.min_level}..{bifpn.max_level} are not supported",
                               where=f"{where}.bifpn", hint="use 3 <= min_level <= 5 and max_level >= min_level")
    variant = int(re.fullmatch(r"ssd_efficientnet-b(\d)_bifpn_keras", name).group(1))
    input_max = min(5, bifpn.max_level)
    backbone = EfficientNetBackbone(variant, levels=tuple(range(bifpn.min_level, input_max + 1)))
    if override_base_hyperparams:
        for m in backbone.modules():
            for attr in (L2_ATTR, L2_BIAS_ATTR):
                if getattr(m, attr, 0.0) > 0.0:
                    setattr(m, attr, float(hp.l2_weight))
    neck = BiFPN(backbone.out_channels, bifpn.min_level, bifpn.max_level, bifpn.num_iterations,
                 max(bifpn.num_filters, min_depth), hp, combine_method=bifpn.combine_method,
                 input_max_level=input_max, freeze_bn=freeze_batchnorm)
    tag_l2(neck, hp.l2_weight)
    if freeze_batchnorm:
        freeze_batch_norm(neck)
    return EfficientDetFeatureExtractor(name, backbone, neck, neck.out_channels, _IMAGENET_MEAN, _IMAGENET_STD,
                                        pad_to_multiple)
