"""TF OD API CenterNet (`CenterNetMetaArch`) object-based checkpoints -> odkit `CenterNetMetaArch`.

Mapped (checked on TF-written checkpoints of `resnet_v1_50_fpn`, `resnet_v1_18_fpn`, `resnet_v2_50`, `hourglass_10`,
`hourglass_104`, `mobilenet_v2` and `mobilenet_v2_fpn_sep_conv` (depth_multiplier 0.5, bilinear), every
variable and shape, and the outputs: tests/test_tf_parity_center_net.py):
- `resnet_v1_50_fpn` / `resnet_v1_101_fpn`: `model/_feature_extractor/_base_model/layer_with_weights-N` is
  `tf.keras.applications.ResNet50/101` (the `backbones.resnet_v1_keras_layers` order, every conv with a bias);
  `model/_feature_extractor/_feature_extractor_model/layer_with_weights-K` (K = 0 is the ResNet itself) in
  creation order: 1 = the 1x1 conv on C5, then per level (C4, C3, C2): lateral 1x1 conv, 3x3 conv, batch norm.
- `resnet_v1_18_fpn` / `resnet_v1_34_fpn`: the TF OD API's Keras resnet_v1_18/34 (pre-activation basic units) in
  the ResNet v2 layer order below, then the same FPN layers.
- `resnet_v2_50` / `resnet_v2_101`: `_base_model` is `tf.keras.applications.ResNet50V2/101V2` (Keras
  functional order, see `_resnet_v2_keras_layers`; `post_bn` is held but unused), `_feature_extractor_model`
  K = 1.. the 3 x (conv, BN, Conv2DTranspose, BN) upsampling layers.
- `hourglass_*`: the subclassed Keras `HourglassNetwork` under `model/_feature_extractor/_network/`, paths = its
  attribute names (`downsample_input/conv_block/conv`, `hourglass_network/0/encoder_block1/0/skip/norm`, ...),
  which odkit's module names mirror.
- heads: `model/_prediction_head_dict/<name with "/" written ".S">/<output i>/layer_with_weights-J`, J counting
  the convs of `make_prediction_net` (3x3 convs, SeparableConv2D with use_depthwise, then the 1x1 output conv).
- `mobilenet_v2_fpn*`: `_base_model` is the TF OD API Keras MobileNet v2 (weighted layers in network order, as
  the SSD mapping), `_feature_extractor_model` K = 1.. as for the ResNet v1 FPN (SeparableConv2D with
  use_separable_conv).
- `mobilenet_v2`: `_network/layer_with_weights-0` is the Keras MobileNet v2, K = 1.. its upsampling layers.
"""

from __future__ import annotations

import torch

from odkit.tfcompat.mapping.backbones import BN_LEAVES, resnet_v1_keras_layers
from odkit.tfcompat.mapping.transforms import conv_kernel, depthwise_kernel, identity

FE = "model/_feature_extractor"
HEADS = "model/_prediction_head_dict"


def _conv(odkit: str, tf: str, bias: bool = True) -> list[tuple[str, str, object]]:
    maps = [(f"{odkit}.weight", f"{tf}/kernel", conv_kernel)]
    if bias:
        maps.append((f"{odkit}.bias", f"{tf}/bias", identity))
    return maps


def _bn(odkit: str, tf: str) -> list[tuple[str, str, object]]:
    return [(f"{odkit}.{o}", f"{tf}/{t}", identity) for t, o in BN_LEAVES]


def _resnet_v1_fpn_maps(fe) -> list[tuple[str, str, object]]:
    maps: list[tuple[str, str, object]] = []
    base = f"{FE}/_base_model"
    layers = []
    if fe.backbone.depth in (18, 34):  # pre-activation basic units, the ResNet v2 layer order
        state = fe.backbone.state_dict()
        for n, (path, kind) in enumerate(_resnet_v2_keras_layers(fe.backbone)):
            odkit, tf = f"feature_extractor.backbone.{path}", f"{base}/layer_with_weights-{n}"
            maps += _conv(odkit, tf, bias=f"{path}.bias" in state) if kind == "conv" else _bn(odkit, tf)
    else:
        layers = resnet_v1_keras_layers(fe.backbone.depth, (1, 2, 3, 4, 5))
    for n, (path, kind) in enumerate(layers):
        odkit = f"feature_extractor.backbone.{path}"
        maps += _conv(odkit, f"{base}/layer_with_weights-{n}") if kind == "conv" else _bn(
            odkit, f"{base}/layer_with_weights-{n}")
    top = f"{FE}/_feature_extractor_model"
    maps += _conv("feature_extractor.top", f"{top}/layer_with_weights-1")
    for i in range(3):
        k = 2 + 3 * i
        maps += _conv(f"feature_extractor.lateral.{i}", f"{top}/layer_with_weights-{k}")
        maps += _conv(f"feature_extractor.smooth.{i}.0", f"{top}/layer_with_weights-{k + 1}")
        maps += _bn(f"feature_extractor.smooth.{i}.1", f"{top}/layer_with_weights-{k + 2}")
    return maps


def _head_maps(odkit_prefix: str, tf_prefix: str, net) -> list[tuple[str, str, object]]:
    """One `make_prediction_net` Sequential: [conv block, ReLU] * n + 1x1 conv."""
    maps: list[tuple[str, str, object]] = []
    j = 0
    for idx, layer in enumerate(net):
        tf = f"{tf_prefix}/layer_with_weights-{j}"
        name = f"{odkit_prefix}.{idx}"
        if layer.__class__.__name__ == "_SameConv":
            maps += _conv(f"{name}.conv", tf)
        elif layer.__class__.__name__ == "Sequential":  # SeparableConv2D: depthwise + pointwise
            maps += [(f"{name}.0.conv.weight", f"{tf}/depthwise_kernel", depthwise_kernel),
                     (f"{name}.1.weight", f"{tf}/pointwise_kernel", conv_kernel),
                     (f"{name}.1.bias", f"{tf}/bias", identity)]
        elif layer.__class__.__name__ == "Conv2d":
            maps += _conv(name, tf)
        else:
            continue
        j += 1
    return maps


def tf_maps(model, model_config, tf_names: set[str]) -> list[tuple[str, str, object]]:
    """(odkit name, TF name, transform) for every tensor of a CenterNet with boxes."""
    from odkit.models.center_net import OBJECT_CENTER, module_key
    from odkit.models.center_net_feature_extractors import (
        HourglassExtractor,
        MobileNetV2Extractor,
        MobileNetV2FpnExtractor,
        ResNetV1FpnExtractor,
        ResNetV2Extractor,
    )

    fe = model.feature_extractor
    if isinstance(fe, ResNetV1FpnExtractor):
        maps = _resnet_v1_fpn_maps(fe)
    elif isinstance(fe, ResNetV2Extractor):
        maps = _resnet_v2_maps(fe)
    elif isinstance(fe, HourglassExtractor):
        maps = _hourglass_maps(fe)
    elif isinstance(fe, MobileNetV2FpnExtractor):
        maps = _mobilenet_v2_fpn_maps(fe, tf_names)
    elif isinstance(fe, MobileNetV2Extractor):
        maps = _mobilenet_v2_maps(fe, tf_names)
    else:
        raise NotImplementedError(f"no TF mapping for the CenterNet feature extractor {type(fe).__name__} yet")
    heads = [("center_heads", OBJECT_CENTER, model.center_heads)]
    for t, task in enumerate(model.tasks):
        for key in task.head_specs():
            heads.append((f"tasks.{t}.heads.{module_key(key)}", key, task.heads[module_key(key)]))
    for odkit_prefix, key, nets in heads:
        tf_key = key.replace("/", ".S")
        for i, net in enumerate(nets):
            maps += _head_maps(f"{odkit_prefix}.{i}", f"{HEADS}/{tf_key}/{i}", net)
    return maps


# ---------------------------------------------------------------- ResNet v2 and Hourglass extractors
def _resnet_v2_keras_layers(backbone) -> list[tuple[str, str]]:
    """[(module path under the backbone, "conv" | "bn")] in Keras functional order (layers by decreasing depth
    from the output, ties in creation order): conv1_conv; per unit preact_bn, 1_conv, 1_bn, 2_conv, 2_bn,
    [0_conv shortcut], 3_conv; post_bn."""
    out = [("conv1", "conv")]
    for stage in ("conv2", "conv3", "conv4", "conv5"):
        for i, unit in enumerate(getattr(backbone, stage)):
            u = f"{stage}.{i}"
            out += [(f"{u}.preact_bn", "bn"), (f"{u}.conv1", "conv"), (f"{u}.bn1", "bn"), (f"{u}.conv2", "conv"),
                    (f"{u}.bn2", "bn")]
            if unit.shortcut is not None:
                out.append((f"{u}.shortcut", "conv"))
            if hasattr(unit, "conv3"):  # bottleneck units (basic units of resnet_v1_18/34 end at 2_bn)
                out.append((f"{u}.conv3", "conv"))
    out.append(("post_bn", "bn"))
    return out


def _resnet_v2_maps(fe) -> list[tuple[str, str, object]]:

    maps: list[tuple[str, str, object]] = []
    state = fe.backbone.state_dict()
    for n, (path, kind) in enumerate(_resnet_v2_keras_layers(fe.backbone)):
        tf = f"{FE}/_base_model/layer_with_weights-{n}"
        odkit = f"feature_extractor.backbone.{path}"
        maps += _conv(odkit, tf, bias=f"{path}.bias" in state) if kind == "conv" else _bn(odkit, tf)
    return maps + _upsample_maps(fe.upsample, f"{FE}/_feature_extractor_model")


def _upsample_maps(upsample, tf_prefix: str) -> list[tuple[str, str, object]]:
    """The (conv, BN, ReLU, Conv2DTranspose, BN, ReLU) x 3 upsampling of the ResNet v2 / MobileNet v2 extractors:
    `<tf_prefix>/layer_with_weights-K`, K = 1.. (K = 0 is the backbone)."""
    from odkit.tfcompat.mapping.transforms import conv_transpose_kernel

    maps: list[tuple[str, str, object]] = []
    k = 1
    for idx, layer in enumerate(upsample):
        tf = f"{tf_prefix}/layer_with_weights-{k}"
        name = f"feature_extractor.upsample.{idx}"
        if isinstance(layer, torch.nn.Conv2d):
            maps += _conv(name, tf)
        elif isinstance(layer, torch.nn.BatchNorm2d):
            maps += _bn(name, tf)
        elif hasattr(layer, "conv") and isinstance(layer.conv, torch.nn.ConvTranspose2d):
            maps += [(f"{name}.conv.weight", f"{tf}/kernel", conv_transpose_kernel),
                     (f"{name}.conv.bias", f"{tf}/bias", identity)]
        else:
            continue
        k += 1
    return maps


def _mobilenet_v2_maps(fe, tf_names: set[str]) -> list[tuple[str, str, object]]:
    """`mobilenet_v2`: `_network` wraps the Keras MobileNet v2 as its layer_with_weights-0, then the upsampling."""
    from odkit.tfcompat.mapping.ssd import sequential_backbone_maps

    net = f"{FE}/_network"
    maps = list(sequential_backbone_maps(fe.backbone, "feature_extractor.backbone.", f"{net}/layer_with_weights-0",
                                         tf_names))
    return maps + _upsample_maps(fe.upsample, net)


def _hourglass_maps(fe) -> list[tuple[str, str, object]]:
    """Subclassed Keras layers: checkpoint paths follow the attribute names (lists index by position)."""
    maps: list[tuple[str, str, object]] = []
    for path, module in fe.network.named_modules():
        if not isinstance(module, (torch.nn.Conv2d, torch.nn.BatchNorm2d)):
            continue
        tf = path.replace("downsample_input.0", "downsample_input.conv_block")
        tf = tf.replace("downsample_input.1", "downsample_input.residual_block")
        tf = f"{FE}/_network/" + tf.replace(".", "/")
        odkit = f"feature_extractor.network.{path}"
        maps += _conv(odkit, tf, bias=False) if isinstance(module, torch.nn.Conv2d) else _bn(odkit, tf)
    return maps


def _mobilenet_v2_fpn_maps(fe, tf_names: set[str]) -> list[tuple[str, str, object]]:
    """TF OD API Keras MobileNet v2 (`_base_model`, weighted layers in network order, as the SSD mapping) and the
    FPN layers of `_feature_extractor_model` (K = 0 is the MobileNet tap model): 1 = 1x1 conv on out_relu, then
    per level lateral 1x1 conv, 3x3 conv (SeparableConv2D with use_separable_conv), batch norm."""
    from odkit.tfcompat.mapping.ssd import sequential_backbone_maps

    maps = list(sequential_backbone_maps(fe.backbone, "feature_extractor.backbone.", f"{FE}/_base_model", tf_names))
    top = f"{FE}/_feature_extractor_model"
    maps += _conv("feature_extractor.top", f"{top}/layer_with_weights-1")
    for i in range(3):
        k = 2 + 3 * i
        maps += _conv(f"feature_extractor.lateral.{i}", f"{top}/layer_with_weights-{k}")
        conv, tf = fe.smooth[i][0], f"{top}/layer_with_weights-{k + 1}"
        if isinstance(conv, torch.nn.Sequential):  # KerasSeparableConv
            maps += [(f"feature_extractor.smooth.{i}.0.0.weight", f"{tf}/depthwise_kernel", depthwise_kernel),
                     (f"feature_extractor.smooth.{i}.0.1.weight", f"{tf}/pointwise_kernel", conv_kernel),
                     (f"feature_extractor.smooth.{i}.0.1.bias", f"{tf}/bias", identity)]
        else:
            maps += _conv(f"feature_extractor.smooth.{i}.0", tf)
        maps += _bn(f"feature_extractor.smooth.{i}.1", f"{top}/layer_with_weights-{k + 2}")
    return maps
