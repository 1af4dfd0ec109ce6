"""`build_model(model_config, is_training) -> DetectionModel` (TF OD API model_builder).

`model_config` is an `odkit.protos.DetectionModel` (the pipeline's `model {}` block). `ssd` builds
`odkit.models.ssd.SSDMetaArch` from the feature extractor / box predictor builders here and the core builders
(anchor generator, box coder, matcher, similarity, losses, post-processing); `faster_rcnn` is dispatched to
`odkit.builders.faster_rcnn_builder.build_faster_rcnn(faster_rcnn_proto, is_training)`, `center_net` to
`odkit.builders.center_net_builder.build_center_net(center_net_proto, is_training)`.
"""

from __future__ import annotations

from odkit.builders import (
    anchor_generator_builder,
    box_coder_builder,
    losses_builder,
    matcher_builder,
    post_processing_builder,
    region_similarity_calculator_builder,
)
from odkit.builders.box_predictor_builder import build_ssd_box_predictor
from odkit.builders.center_net_builder import build_center_net
from odkit.builders.faster_rcnn_builder import build_faster_rcnn
from odkit.builders.feature_extractor_builder import build_ssd_feature_extractor
from odkit.builders.input_size import fixed_input_size
from odkit.core.target_assigner import TargetAssigner
from odkit.errors import UnsupportedError
from odkit.models.ssd import SSDLossConfig, SSDMetaArch
from odkit.models.ssd_targets import SSDExampleSampler, SSDTargetAssigner

WHERE = "model.ssd"


def build_model(model_config, is_training: bool):
    """Build the detection model named by the `model` oneof."""
    kind = model_config.WhichOneof("model")
    if kind == "ssd":
        return build_ssd(model_config.ssd, is_training)
    if kind == "faster_rcnn":
        return build_faster_rcnn(model_config.faster_rcnn, is_training)
    if kind == "center_net":
        return build_center_net(model_config.center_net, is_training)
    raise UnsupportedError(f"model type {kind or '(empty)'} is not supported", where=f"model.{kind}" if kind else "model",
                           hint="use model { ssd | faster_rcnn | center_net { ... } }")


def _refuse_ssd_fields(ssd) -> None:
    for name in ("mask_head_config",):
        if ssd.HasField(name):
            raise UnsupportedError(f"{name} is not supported", where=f"{WHERE}.{name}")
    for name in ("explicit_background_class", "use_confidences_as_targets"):
        if getattr(ssd, name):
            raise UnsupportedError(f"{name}: true is not supported", where=f"{WHERE}.{name}", hint="remove it")
    if ssd.HasField("loss"):
        loss = ssd.loss
        if int(loss.expected_loss_weights) != 0:
            raise UnsupportedError("expected_loss_weights is not supported", where=f"{WHERE}.loss.expected_loss_weights")
        if loss.HasField("equalization_loss") and loss.equalization_loss.weight > 0:
            raise UnsupportedError("equalization_loss is not supported", where=f"{WHERE}.loss.equalization_loss")
    ag = ssd.anchor_generator
    if (ag.WhichOneof("anchor_generator_oneof") == "multiscale_anchor_generator"
            and not ag.multiscale_anchor_generator.normalize_coordinates):
        raise UnsupportedError("normalize_coordinates: false is not supported for SSD (anchors must be normalized)",
                               where=f"{WHERE}.anchor_generator.multiscale_anchor_generator.normalize_coordinates",
                               hint="remove it")
    if ssd.num_classes <= 0:
        raise UnsupportedError("num_classes must be > 0", where=f"{WHERE}.num_classes",
                               hint="set it to the number of label-map classes")


def build_ssd(ssd, is_training: bool):
    """`Ssd` proto -> SSDMetaArch (train or eval mode)."""
    _refuse_ssd_fields(ssd)
    num_classes = int(ssd.num_classes)
    add_bg = bool(ssd.add_background_class)
    freeze_bn = bool(ssd.freeze_batchnorm)
    extractor = build_ssd_feature_extractor(ssd.feature_extractor, freeze_batchnorm=freeze_bn)
    anchor_generator = anchor_generator_builder.build(ssd.anchor_generator, f"{WHERE}.anchor_generator")
    num_class_slots = num_classes + 1 if add_bg else num_classes
    predictor = build_ssd_box_predictor(ssd.box_predictor, extractor.out_channels,
                                        anchor_generator.num_anchors_per_location(), num_class_slots,
                                        freeze_batchnorm=freeze_bn)
    box_coder = box_coder_builder.build(ssd.box_coder, f"{WHERE}.box_coder")
    if predictor.box_code_size != box_coder.code_size:
        raise UnsupportedError(f"box_code_size {predictor.box_code_size} does not match the box coder's code size "
                               f"{box_coder.code_size}", where=f"{WHERE}.box_predictor")
    matcher = matcher_builder.build(ssd.matcher, f"{WHERE}.matcher")
    similarity = region_similarity_calculator_builder.build(ssd.similarity_calculator,
                                                              f"{WHERE}.similarity_calculator")
    assigner = TargetAssigner(similarity, matcher, box_coder, negative_class_weight=ssd.negative_class_weight)
    losses = losses_builder.build(ssd.loss, f"{WHERE}.loss")
    nms_fn, score_converter = post_processing_builder.build(ssd.post_processing, f"{WHERE}.post_processing")
    model = SSDMetaArch(
        num_classes=num_classes, feature_extractor=extractor, box_predictor=predictor,
        anchor_generator=anchor_generator, box_coder=box_coder,
        assign_targets=SSDTargetAssigner(assigner, num_classes, add_bg, bool(ssd.encode_background_as_zeros)),
        classification_loss=losses.classification_loss, localization_loss=losses.localization_loss,
        score_converter=score_converter, nms_fn=nms_fn,
        loss_config=SSDLossConfig(
            classification_weight=losses.classification_weight, localization_weight=losses.localization_weight,
            normalize_loss_by_num_matches=bool(ssd.normalize_loss_by_num_matches),
            normalize_loc_loss_by_codesize=bool(ssd.normalize_loc_loss_by_codesize)),
        add_background_class=add_bg, hard_example_miner=losses.hard_example_miner,
        sample_fn=(SSDExampleSampler(losses.random_example_sampler, add_bg)
                   if losses.random_example_sampler is not None else None),
        input_size=fixed_input_size(ssd))
    model.train(is_training)
    return model
