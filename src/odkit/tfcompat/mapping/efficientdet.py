"""TF OD API EfficientDet (`ssd_efficientnet-b{0..7}_bifpn_keras`) object paths -> odkit state_dict names.

TF2 object-based checkpoint layout (`tf.train.Checkpoint(model=detection_model)`):

- backbone: `model/_feature_extractor/_efficientnet/layer_with_weights-N/...` for the Keras EfficientNet's
  N-th weighted layer up to the last endpoint (`stack_6/block_0/project_bn`), and
  `model/_feature_extractor/classification_backbone/layer_with_weights-N/...` for the layers only the full
  classification model holds (later stack-6 blocks, `top_conv2d`, `top_bn`, `logits`). Both index the same
  weighted-layer list (`EfficientNetBackbone.tf_weight_layers()`, checked against Keras for B0..B7), so either
  prefix is accepted for any N. Conv `kernel` HWIO -> OIHW, `depthwise_kernel` (k, k, C, 1) -> (C, 1, k, k),
  dense `kernel` (in, out) -> (out, in); BN gamma/beta/moving_mean/moving_variance ->
  weight/bias/running_mean/running_var.
- BiFPN: `model/_feature_extractor/_bifpn_stage/`
  `node_input_blocks/<node>/<input>/1/<0 conv | 1 batchnorm>/...` (the 1x1 resample projection; `/0` of the
  pair is the input index), `node_combine_op/<node>/bifpn_combine_weights` ((n, 1) -> (n,)),
  `node_post_combine_block/<node>/<1 separable conv | 2 batchnorm>/...` (0 is the activation).
  Nodes are numbered in `odkit.models.necks.bifpn.BiFPN.nodes` order (TF's node config order).
- The weight-shared box predictor (separable towers and heads): `odkit.tfcompat.mapping.ssd`.
"""

from __future__ import annotations

from torch import nn

from odkit.tfcompat.mapping.ssd import FE, Triple, bn_maps, box_predictor_maps, conv_maps, separable_maps
from odkit.tfcompat.mapping.transforms import dense_kernel, flatten, identity

BACKBONE_ROOTS = (f"{FE}/_efficientnet", f"{FE}/classification_backbone")
BIFPN = f"{FE}/_bifpn_stage"


def _keras_layer_maps(module: nn.Module, odkit: str, tf: str, tf_names: set[str]) -> list[Triple]:
    if isinstance(module, nn.BatchNorm2d):
        return bn_maps(odkit, tf, tf_names)
    if isinstance(module, nn.Linear):
        return [(f"{odkit}.weight", f"{tf}/kernel", dense_kernel), (f"{odkit}.bias", f"{tf}/bias", identity)]
    return conv_maps(module, odkit, tf)


def backbone_maps(backbone, odkit: str, tf_names: set[str]) -> list[Triple]:
    """The Keras EfficientNet's `layer_with_weights-N` -> `EfficientNetBackbone.tf_weight_layers()[N]`."""
    names = {id(m): n for n, m in backbone.named_modules()}
    out: list[Triple] = []
    for index, (_keras_name, module) in enumerate(backbone.tf_weight_layers()):
        layer: list[Triple] = []
        for root in BACKBONE_ROOTS:
            layer = _keras_layer_maps(module, f"{odkit}.{names[id(module)]}", f"{root}/layer_with_weights-{index}",
                                      tf_names)
            if all(t in tf_names for _, t, _ in layer):
                break
        out += layer
    return out


def bifpn_maps(neck, odkit: str, tf_names: set[str]) -> list[Triple]:
    out: list[Triple] = []
    for n, node in enumerate(neck.nodes):
        at = f"{odkit}.nodes.{n}"
        for j, resample in enumerate(node.resample):
            if isinstance(resample.project, nn.Sequential):
                for k, layer in enumerate(resample.project):
                    out += _keras_layer_maps(layer, f"{at}.resample.{j}.project.{k}",
                                             f"{BIFPN}/node_input_blocks/{n}/{j}/1/{k}", tf_names)
        if isinstance(getattr(node, "weights", None), nn.Parameter):
            out.append((f"{at}.weights", f"{BIFPN}/node_combine_op/{n}/bifpn_combine_weights", flatten))
        if node.conv is not None:
            post = f"{BIFPN}/node_post_combine_block/{n}"
            out += separable_maps(node.conv[0], node.conv[1], f"{at}.conv.0", f"{at}.conv.1", f"{post}/1")
            if len(node.conv) > 2 and isinstance(node.conv[2], nn.BatchNorm2d):
                out += bn_maps(f"{at}.conv.2", f"{post}/2", tf_names)
    return out


def tf_maps(model, model_config, tf_names: set[str]) -> list[Triple]:
    """(odkit name, TF name, transform) for every tensor of an SSD EfficientDet (backbone, BiFPN, predictor)."""
    fe = model.feature_extractor
    return (backbone_maps(fe.backbone, "feature_extractor.backbone", tf_names)
            + bifpn_maps(fe.neck, "feature_extractor.neck", tf_names)
            + box_predictor_maps(model, model_config, tf_names))
