"""`BoxPredictor` proto -> SSD box predictor module (odkit.models.heads)."""

from __future__ import annotations

from odkit.builders.hyperparams_builder import build_conv_hyperparams
from odkit.errors import UnsupportedError
from odkit.models.heads.convolutional import ConvolutionalBoxPredictor
from odkit.models.heads.weight_shared import WeightSharedConvolutionalBoxPredictor


def build_ssd_box_predictor(proto, in_channels: list[int], num_anchors: list[int], num_class_slots: int, *,
                            freeze_batchnorm: bool = False, where: str = "model.ssd.box_predictor"):
    """convolutional_box_predictor or weight_shared_convolutional_box_predictor (TF OD API fields)."""
    kind = proto.WhichOneof("box_predictor_oneof")
    if kind == "weight_shared_convolutional_box_predictor":
        p = proto.weight_shared_convolutional_box_predictor
        w = f"{where}.{kind}"
        _refuse_common(p, w)
        if p.use_dropout:
            raise UnsupportedError("use_dropout is not supported for the weight shared box predictor",
                                   where=f"{w}.use_dropout", hint="remove it")
        if int(p.score_converter) != 0:
            raise UnsupportedError("score_converter in the box predictor is not supported",
                                   where=f"{w}.score_converter", hint="set it in post_processing")
        hp = build_conv_hyperparams(p.conv_hyperparams, where=f"{w}.conv_hyperparams")
        if len(set(num_anchors)) != 1:
            raise UnsupportedError("weight_shared_convolutional_box_predictor needs the same number of anchors "
                                   "per location on every level", where=w)
        apply_bn = p.conv_hyperparams.HasField("batch_norm")  # TF's box_predictor_builder rule
        return WeightSharedConvolutionalBoxPredictor(
            in_channels, num_anchors, num_class_slots, hp, depth=p.depth,
            num_layers_before_predictor=p.num_layers_before_predictor, kernel_size=p.kernel_size,
            class_prediction_bias_init=p.class_prediction_bias_init,
            share_prediction_tower=p.share_prediction_tower, use_depthwise=p.use_depthwise,
            apply_batch_norm=bool(apply_bn), box_code_size=p.box_code_size, freeze_bn=freeze_batchnorm,
            apply_hyperparams_to_heads=p.apply_conv_hyperparams_to_heads,
            apply_hyperparams_pointwise=p.apply_conv_hyperparams_pointwise)
    if kind == "convolutional_box_predictor":
        p = proto.convolutional_box_predictor
        w = f"{where}.{kind}"
        _refuse_common(p, w)
        if p.apply_sigmoid_to_scores:
            raise UnsupportedError("apply_sigmoid_to_scores is not supported", where=f"{w}.apply_sigmoid_to_scores",
                                   hint="use post_processing.score_converter")
        hp = build_conv_hyperparams(p.conv_hyperparams, where=f"{w}.conv_hyperparams")
        return ConvolutionalBoxPredictor(
            in_channels, num_anchors, num_class_slots, hp, min_depth=p.min_depth, max_depth=p.max_depth,
            num_layers_before_predictor=p.num_layers_before_predictor, kernel_size=p.kernel_size,
            use_dropout=p.use_dropout, dropout_keep_probability=p.dropout_keep_probability,
            class_prediction_bias_init=p.class_prediction_bias_init, use_depthwise=p.use_depthwise,
            box_code_size=p.box_code_size, freeze_bn=freeze_batchnorm)
    raise UnsupportedError(f"box_predictor {kind or '(empty)'} is not supported for SSD", where=where,
                           hint="use weight_shared_convolutional_box_predictor or convolutional_box_predictor")


def _refuse_common(p, where: str) -> None:
    fields = p.DESCRIPTOR.fields_by_name
    for name in ("mask_head", "box_encodings_clip_range"):
        if name in fields and p.HasField(name):
            raise UnsupportedError(f"{name} is not supported", where=f"{where}.{name}", hint="remove it")
