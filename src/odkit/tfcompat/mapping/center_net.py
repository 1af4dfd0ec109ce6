"""TF OD API CenterNet (`CenterNetMetaArch`) object-based checkpoints -> odkit `CenterNetMetaArch`.

Mapped (checked on a TF-written `resnet_v1_50_fpn` checkpoint, every variable and shape):
- `resnet_v1_50_fpn` / `resnet_v1_101_fpn`: `model/_feature_extractor/_base_model/layer_with_weights-N` is
  `tf.keras.applications.ResNet50/101` (the `backbones.resnet_v1_keras_layers` order, every conv with a bias);
  `model/_feature_extractor/_feature_extractor_model/layer_with_weights-K` (K = 0 is the ResNet itself) in
  creation order: 1 = the 1x1 conv on C5, then per level (C4, C3, C2): lateral 1x1 conv, 3x3 conv, batch norm.
- heads: `model/_prediction_head_dict/<name with "/" written ".S">/<output i>/layer_with_weights-J`, J counting
  the convs of `make_prediction_net` (3x3 convs, then the 1x1 output conv).
Other extractor types raise NotImplementedError (no TF-written checkpoint checked for them yet).
"""

from __future__ import annotations

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
    for n, (path, kind) in enumerate(resnet_v1_keras_layers(fe.backbone.depth, (1, 2, 3, 4, 5))):
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
    from odkit.models.center_net_feature_extractors import ResNetV1FpnExtractor

    fe = model.feature_extractor
    if not isinstance(fe, ResNetV1FpnExtractor):
        raise NotImplementedError(f"no TF mapping for the CenterNet feature extractor {type(fe).__name__} yet")
    maps = _resnet_v1_fpn_maps(fe)
    heads = [("center_heads", OBJECT_CENTER, model.center_heads)]
    for t, task in enumerate(model.tasks):
        for key in task.head_specs():
            heads.append((f"tasks.{t}.heads.{module_key(key)}", key, task.heads[module_key(key)]))
    for odkit_prefix, key, nets in heads:
        tf_key = key.replace("/", ".S")
        for i, net in enumerate(nets):
            maps += _head_maps(f"{odkit_prefix}.{i}", f"{HEADS}/{tf_key}/{i}", net)
    return maps
