"""TF OD API EfficientDet (`ssd_efficientnet-b{0..7}_bifpn_keras`) object paths -> odkit state_dict names.

TF2 object-based checkpoint layout (`tf.train.Checkpoint(model=detection_model)`):

- backbone: `model/_feature_extractor/_efficientnet/layer_with_weights-N/...` for the Keras EfficientNet's
  N-th weighted layer up to the last endpoint (`stack_6/block_0/project_bn`), and
  `model/_feature_extractor/classification_backbone/layer_with_weights-N/...` for the layers only the full
  classification model holds (later stack-6 blocks, `top_conv2d`, `top_bn`, `logits`). Both index the same
  weighted-layer list (`EfficientNetBackbone.tf_weight_layers()`), so either prefix is accepted for any N.
  Conv `kernel` HWIO -> OIHW, `depthwise_kernel` (k, k, C, 1) -> (C, 1, k, k), dense `kernel` (in, out) ->
  (out, in); BN gamma/beta/moving_mean/moving_variance -> weight/bias/running_mean/running_var.
- BiFPN: `model/_feature_extractor/_bifpn_stage/`
  `node_input_blocks/<node>/<input>/1/<0 conv | 1 batchnorm>/...` (the 1x1 resample projection),
  `node_combine_op/<node>/bifpn_combine_weights` ((n, 1) -> (n,)),
  `node_post_combine_block/<node>/<1 separable conv | 2 batchnorm>/...` (0 is the activation).
  Nodes are numbered in `odkit.models.necks.bifpn.BiFPN.nodes` order (TF's node config order).
- The weight-shared box predictor (`model/_box_predictor/...`) is mapped by the SSD mapping
  (`odkit.tfcompat.mapping.ssd`), which handles separable (use_depthwise) towers and heads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from torch import nn

Transform = Callable[[np.ndarray], np.ndarray]

FEATURE_EXTRACTOR = "model/_feature_extractor"
BACKBONE_PREFIXES = (f"{FEATURE_EXTRACTOR}/_efficientnet", f"{FEATURE_EXTRACTOR}/classification_backbone")
BIFPN_PREFIX = f"{FEATURE_EXTRACTOR}/_bifpn_stage"
_BN = (("gamma", "weight"), ("beta", "bias"), ("moving_mean", "running_mean"), ("moving_variance", "running_var"))


def hwio_to_oihw(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.transpose(a, (3, 2, 0, 1)))


def depthwise_to_torch(a: np.ndarray) -> np.ndarray:
    """(k, k, C, M) depthwise kernel -> (C*M, 1, k, k) grouped conv weight."""
    kh, kw, c, m = a.shape
    return np.ascontiguousarray(np.transpose(a.reshape(kh, kw, c * m), (2, 0, 1))[:, None])


def dense_to_torch(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.T)


def identity(a: np.ndarray) -> np.ndarray:
    return a


def flatten(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.reshape(-1))


def _layer_maps(module: nn.Module, odkit_prefix: str, tf_prefix: str) -> list[tuple[str, str, Transform]]:
    """Maps for one Keras weighted layer (Conv2D / DepthwiseConv2D / SeparableConv2D parts / BN / Dense)."""
    out: list[tuple[str, str, Transform]] = []
    if isinstance(module, nn.BatchNorm2d):
        for tf_leaf, leaf in _BN:
            out.append((f"{odkit_prefix}.{leaf}", f"{tf_prefix}/{tf_leaf}", identity))
    elif isinstance(module, nn.Linear):
        out.append((f"{odkit_prefix}.weight", f"{tf_prefix}/kernel", dense_to_torch))
        out.append((f"{odkit_prefix}.bias", f"{tf_prefix}/bias", identity))
    elif isinstance(module, nn.Conv2d):
        depthwise = module.groups > 1 and module.groups == module.in_channels
        out.append((f"{odkit_prefix}.weight",
                    f"{tf_prefix}/{'depthwise_kernel' if depthwise else 'kernel'}",
                    depthwise_to_torch if depthwise else hwio_to_oihw))
        if module.bias is not None:
            out.append((f"{odkit_prefix}.bias", f"{tf_prefix}/bias", identity))
    else:
        raise TypeError(f"no TF layer mapping for {type(module).__name__}")
    return out


def separable_maps(depthwise: nn.Conv2d, pointwise: nn.Conv2d, dw_prefix: str, pw_prefix: str,
                   tf_prefix: str) -> list[tuple[str, str, Transform]]:
    """Keras SeparableConv2D (depthwise_kernel, pointwise_kernel, bias) -> odkit depthwise + pointwise convs."""
    out = [(f"{dw_prefix}.weight", f"{tf_prefix}/depthwise_kernel", depthwise_to_torch),
           (f"{pw_prefix}.weight", f"{tf_prefix}/pointwise_kernel", hwio_to_oihw)]
    if pointwise.bias is not None:
        out.append((f"{pw_prefix}.bias", f"{tf_prefix}/bias", identity))
    return out


def efficientdet_feature_extractor_maps(model: nn.Module, tf_names: Iterable[str],
                                        prefix: str = "feature_extractor") -> list[tuple[str, str, Transform]]:
    """(odkit name, TF variable name, transform) for the EfficientNet backbone and the BiFPN of an
    `EfficientDetFeatureExtractor` at `prefix` inside `model` (an SSD built from an EfficientDet config)."""
    names = set(tf_names)
    fe = model.get_submodule(prefix)
    backbone, neck = fe.backbone, fe.neck
    module_names = {id(m): n for n, m in backbone.named_modules()}
    out: list[tuple[str, str, Transform]] = []
    for index, (_tf_layer, module) in enumerate(backbone.tf_weight_layers()):
        odkit_prefix = f"{prefix}.backbone.{module_names[id(module)]}"
        layer_maps = []
        for tf_root in BACKBONE_PREFIXES:
            layer_maps = _layer_maps(module, odkit_prefix, f"{tf_root}/layer_with_weights-{index}")
            if all(t in names for _, t, _ in layer_maps):
                break
        out += layer_maps
    for n, node in enumerate(neck.nodes):
        node_prefix = f"{prefix}.neck.nodes.{n}"
        for j, resample in enumerate(node.resample):
            if isinstance(resample.project, nn.Sequential):
                tf_block = f"{BIFPN_PREFIX}/node_input_blocks/{n}/{j}/1"
                for k, layer in enumerate(resample.project):
                    out += _layer_maps(layer, f"{node_prefix}.resample.{j}.project.{k}", f"{tf_block}/{k}")
        if hasattr(node, "weights") and isinstance(node.weights, nn.Parameter):
            out.append((f"{node_prefix}.weights", f"{BIFPN_PREFIX}/node_combine_op/{n}/bifpn_combine_weights",
                        flatten))
        if node.conv is not None:
            tf_block = f"{BIFPN_PREFIX}/node_post_combine_block/{n}"
            out += separable_maps(node.conv[0], node.conv[1], f"{node_prefix}.conv.0", f"{node_prefix}.conv.1",
                                  f"{tf_block}/1")
            if len(node.conv) > 2 and isinstance(node.conv[2], nn.BatchNorm2d):
                out += _layer_maps(node.conv[2], f"{node_prefix}.conv.2", f"{tf_block}/2")
    return out
