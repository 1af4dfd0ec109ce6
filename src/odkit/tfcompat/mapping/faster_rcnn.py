"""Faster R-CNN name mapping: TF OD API Keras `FasterRCNNMetaArch` object paths -> odkit
`FasterRCNNMetaArch` state_dict names.

TF object paths (as saved by `tf.train.Checkpoint(model=detection_model)`, the TF2 zoo's ckpt-0):
- `model/_feature_extractor_for_proposal_features/layer_with_weights-N/...`: the Keras ResNet v1 up to
  `conv4_block*_out` (stem + conv2..conv4; `mapping.backbones.resnet_v1_keras_maps`)
  -> `feature_extractor.backbone.{conv1,bn1,layer1..layer3}`;
- `model/_feature_extractor_for_box_classifier_features/layer_with_weights-N/...`: conv5 (a sub-model of
  the same network, N restarting at 0) -> `feature_extractor.backbone.layer4`;
- `model/_first_stage_box_predictor_first_conv/layer_with_weights-0/{kernel,bias}` (RPNConv; with
  batch norm in first_stage_box_predictor_conv_hyperparams: layer_with_weights-1 = RPNBatchNorm)
  -> `rpn_head.conv.0` (`rpn_head.conv.1`);
- `model/_first_stage_box_predictor/_prediction_heads/{box_encodings,class_predictions_with_background}/
  L/_{box_encoder,class_predictor}_layers/0/{kernel,bias}` (one 1x1 conv per feature map L)
  -> `rpn_head.box.L`, `rpn_head.objectness.L`;
- `model/_mask_rcnn_box_predictor/_box_prediction_head/_box_encoder_layers/K/...` and
  `.../_class_prediction_head/_class_predictor_layers/K/...`: [Flatten, (Dropout), Dense, BatchNorm from
  fc_hyperparams] -> `box_predictor.{box_fc,class_fc}.{linear,bn}`.
Inception-ResNet-v2 (`faster_rcnn_inception_resnet_v2_keras`): the same two sub-models over the Keras
Inception-ResNet-v2 (`mapping.backbones.inception_resnet_v2_keras_maps`) -> `feature_extractor.backbone`.
Mask R-CNN: `model/_mask_rcnn_box_predictor/_third_stage_heads/mask_predictions/_mask_predictor_layers/K`
(Keras [conv, batch norm, activation] x (num_conv_layers - 1), [upsample, conv, bn, act], last conv with
bias; batch norms only with batch_norm in conv_hyperparams) -> `mask_head.{convs.i,upsample_conv,last}`.
"""

from __future__ import annotations

import re

from torch import nn

from odkit.tfcompat.mapping.backbones import _bn, inception_resnet_v2_keras_maps, resnet_v1_keras_maps
from odkit.tfcompat.mapping.transforms import conv_kernel, dense_kernel, identity

PROPOSAL = "model/_feature_extractor_for_proposal_features"
BOX_CLASSIFIER = "model/_feature_extractor_for_box_classifier_features"
RPN_CONV = "model/_first_stage_box_predictor_first_conv"
RPN_HEADS = "model/_first_stage_box_predictor/_prediction_heads"
SECOND_STAGE = "model/_mask_rcnn_box_predictor"


def _dense_index(tf_names: set[str], head: str) -> int | None:
    pat = re.compile(re.escape(head) + r"/(\d+)/kernel$")
    found = sorted(int(m.group(1)) for n in tf_names if (m := pat.match(n)))
    return found[0] if found else None


def tf_maps(model, model_config, tf_names: set[str]) -> list[tuple[str, str, object]]:
    """(odkit name, TF name, transform) for every tensor of a ResNet (+FPN) Faster R-CNN."""
    from odkit.models.faster_rcnn_feature_extractors import (
        InceptionResNetV2FasterRcnnFeatureExtractor,
        ResNetFasterRcnnFeatureExtractor,
        ResNetFpnFasterRcnnFeatureExtractor,
    )

    fe = model.feature_extractor
    if isinstance(fe, InceptionResNetV2FasterRcnnFeatureExtractor):
        maps = inception_resnet_v2_keras_maps("feature_extractor.backbone.", PROPOSAL, "proposal")
        maps += inception_resnet_v2_keras_maps("feature_extractor.backbone.", BOX_CLASSIFIER, "box_classifier")
    elif isinstance(fe, ResNetFpnFasterRcnnFeatureExtractor):
        maps = _fpn_extractor_maps(fe, fe.backbone.depth)
    elif isinstance(fe, ResNetFasterRcnnFeatureExtractor):
        depth = fe.backbone.depth
        maps = resnet_v1_keras_maps("feature_extractor.backbone.", PROPOSAL, depth, (1, 2, 3, 4))
        maps += resnet_v1_keras_maps("feature_extractor.backbone.", BOX_CLASSIFIER, depth, (5,))
    else:
        raise NotImplementedError(f"no TF mapping for Faster R-CNN feature extractor {type(fe).__name__}")
    maps += _rpn_maps(model)
    if model.box_predictor is not None:
        maps += _second_stage_maps(model, tf_names)
    if getattr(model, "mask_head", None) is not None:
        maps += _mask_head_maps(model.mask_head)
    return maps


MASK_LAYERS = f"{SECOND_STAGE}/_third_stage_heads/mask_predictions/_mask_predictor_layers"


def _mask_head_maps(head) -> list[tuple[str, str, object]]:
    """Keras MaskRCNNMaskHead._mask_predictor_layers (a flat list with the activations and the upsampling
    Lambda counted) -> odkit MaskRCNNMaskHead."""
    maps: list[tuple[str, str, object]] = []
    k = 0

    def conv_bn(odkit: str, block: nn.Module) -> None:
        nonlocal k
        maps.append((f"{odkit}.0.weight", f"{MASK_LAYERS}/{k}/kernel", conv_kernel))
        if block[0].bias is not None:
            maps.append((f"{odkit}.0.bias", f"{MASK_LAYERS}/{k}/bias", identity))
        k += 1
        if isinstance(block[1], nn.modules.batchnorm._BatchNorm):
            maps.extend(_bn(f"{odkit}.1", f"{MASK_LAYERS}/{k}"))
        k += 2  # batch norm (or its identity placeholder) and activation

    for i, block in enumerate(head.convs):
        conv_bn(f"mask_head.convs.{i}", block)
    if head.convolve_then_upsample:
        k += 1  # the nearest-neighbour upsampling Lambda
        conv_bn("mask_head.upsample_conv", head.upsample_conv)
    maps += [("mask_head.last.weight", f"{MASK_LAYERS}/{k}/kernel", conv_kernel),
             ("mask_head.last.bias", f"{MASK_LAYERS}/{k}/bias", identity)]
    return maps


def _fpn_extractor_maps(fe, depth: int) -> list[tuple[str, str, object]]:
    """faster_rcnn_resnet*_fpn_keras: `_ResnetFPN` (classification_backbone, fpn_features_generator,
    coarse_feature_layers) and the box classifier Sequential [Flatten, Dense, BatchNorm?, Dense]."""
    fpn = fe.fpn
    maps = resnet_v1_keras_maps("feature_extractor.backbone.", f"{PROPOSAL}/classification_backbone", depth,
                                (1, 2, 3, 4, 5))
    gen = f"{PROPOSAL}/fpn_features_generator"
    levels = sorted(int(k) for k in fpn.lateral)  # base levels min..min(max, 5), top = last
    top, rest = levels[-1], levels[-2::-1]         # TF: top_layers/0 = top; residual/conv i = level top-1-i
    maps += _conv_bias(f"feature_extractor.fpn.lateral.{top}", f"{gen}/top_layers/0")
    for i, lvl in enumerate(rest):
        maps += _conv_bias(f"feature_extractor.fpn.lateral.{lvl}", f"{gen}/residual_blocks/{i}/0")
        maps += _conv_bn(f"feature_extractor.fpn.smooth.{lvl}", f"{gen}/conv_layers/{i}", fpn.smooth[str(lvl)])
    for i, block in enumerate(fpn.coarse):
        maps += _conv_bn(f"feature_extractor.fpn.coarse.{i}", f"{PROPOSAL}/coarse_feature_layers/{i}", block)
    seq = fe.box_classifier  # [_FlattenNHWC, Linear, ReLU, BN | Identity, Linear, ReLU]
    has_bn = isinstance(seq[3], nn.modules.batchnorm._BatchNorm)
    maps += [("feature_extractor.box_classifier.1.weight", f"{BOX_CLASSIFIER}/layer_with_weights-0/kernel",
              dense_kernel),
             ("feature_extractor.box_classifier.1.bias", f"{BOX_CLASSIFIER}/layer_with_weights-0/bias", identity)]
    if has_bn:
        maps += _bn("feature_extractor.box_classifier.3", f"{BOX_CLASSIFIER}/layer_with_weights-1")
    k = 2 if has_bn else 1
    maps += [("feature_extractor.box_classifier.4.weight", f"{BOX_CLASSIFIER}/layer_with_weights-{k}/kernel",
              dense_kernel),
             ("feature_extractor.box_classifier.4.bias", f"{BOX_CLASSIFIER}/layer_with_weights-{k}/bias", identity)]
    return maps


def _conv_bias(odkit: str, tf: str) -> list[tuple[str, str, object]]:
    return [(f"{odkit}.weight", f"{tf}/kernel", conv_kernel), (f"{odkit}.bias", f"{tf}/bias", identity)]


def _conv_bn(odkit: str, tf: str, block: nn.Module) -> list[tuple[str, str, object]]:
    """conv (+bias without batch norm) -> batch norm, Keras [conv, bn, activation] list."""
    maps: list[tuple[str, str, object]] = [(f"{odkit}.0.weight", f"{tf}/0/kernel", conv_kernel)]
    if getattr(block[0], "bias", None) is not None:
        maps.append((f"{odkit}.0.bias", f"{tf}/0/bias", identity))
    if len(block) > 1 and isinstance(block[1], nn.modules.batchnorm._BatchNorm):
        maps += _bn(f"{odkit}.1", f"{tf}/1")
    return maps


def _rpn_maps(model) -> list[tuple[str, str, object]]:
    head = model.rpn_head
    maps: list[tuple[str, str, object]] = [(f"rpn_head.conv.0.{p}", f"{RPN_CONV}/layer_with_weights-0/{t}", f)
                                           for p, t, f in (("weight", "kernel", conv_kernel),
                                                           ("bias", "bias", identity))
                                           if getattr(head.conv[0], p, None) is not None]
    if len(head.conv) > 2:  # conv, batch norm, activation
        maps += _bn("rpn_head.conv.1", f"{RPN_CONV}/layer_with_weights-1")
    for level in range(len(head.box)):
        for odkit, tf in ((f"rpn_head.box.{level}", f"{RPN_HEADS}/box_encodings/{level}/_box_encoder_layers/0"),
                          (f"rpn_head.objectness.{level}",
                           f"{RPN_HEADS}/class_predictions_with_background/{level}/_class_predictor_layers/0")):
            maps += [(f"{odkit}.weight", f"{tf}/kernel", conv_kernel), (f"{odkit}.bias", f"{tf}/bias", identity)]
    return maps


def _second_stage_maps(model, tf_names: set[str]) -> list[tuple[str, str, object]]:
    maps: list[tuple[str, str, object]] = []
    bp = model.box_predictor
    for fc, head in ((bp.box_fc, f"{SECOND_STAGE}/_box_prediction_head/_box_encoder_layers"),
                     (bp.class_fc, f"{SECOND_STAGE}/_class_prediction_head/_class_predictor_layers")):
        name = "box_fc" if fc is bp.box_fc else "class_fc"
        k = _dense_index(tf_names, head)
        if k is None:  # nothing in the checkpoint: the plan reports the odkit tensors as unfilled
            k = 2 if bp.use_dropout else 1
        maps.append((f"box_predictor.{name}.linear.weight", f"{head}/{k}/kernel", dense_kernel))
        if fc.linear.bias is not None:
            maps.append((f"box_predictor.{name}.linear.bias", f"{head}/{k}/bias", identity))
        if fc.bn is not None:
            maps += _bn(f"box_predictor.{name}.bn", f"{head}/{k + 1}")
    return maps
