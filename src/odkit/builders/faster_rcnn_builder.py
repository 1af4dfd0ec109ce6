"""`FasterRcnn` proto -> `odkit.models.faster_rcnn.FasterRCNNMetaArch` (TF OD API model_builder._build_faster_rcnn_model).

`build_faster_rcnn(faster_rcnn_proto, is_training) -> DetectionModel`. Feature extractors:
faster_rcnn_resnet{50,101,152}_keras and the TF1 names faster_rcnn_resnet{50,101,152} (torchvision ResNets,
no pretrained download) with grid_anchor_generator, and faster_rcnn_resnet{50,101,152}_fpn_keras with
multiscale_anchor_generator over the FPN levels. Mask R-CNN: mask_rcnn_box_predictor predict_instance_masks
builds `MaskRCNNMaskHead` from conv_hyperparams (number_of_stages 3 uses it; 2 builds it unused, as TF2).
Refused with UnsupportedError naming the field: other extractors, first_stage_features_stride other than
16, other anchor generators, second-stage predictors other than mask_rcnn_box_predictor, keypoint
prediction, number_of_stages 3 without predict_instance_masks, context_config,
output_final_box(_rpn)_features. resize_masks is honoured by the input pipeline (masks reach the model
already resized with the image).
"""

from __future__ import annotations

from odkit.builders import anchor_generator_builder, losses_builder, post_processing_builder
from odkit.builders.hyperparams_builder import build_conv_hyperparams
from odkit.builders.input_size import fixed_input_size
from odkit.config.validate import FPN_EXTRACTOR_DEFAULT_LEVELS, pyramid_levels
from odkit.errors import UnsupportedError
from odkit.models.faster_rcnn import FasterRcnnConfig, FasterRCNNMetaArch
from odkit.models.faster_rcnn_feature_extractors import (
    FPN_TYPES,
    INCEPTION_RESNET_V2_TYPES,
    RESNET_TYPES,
    InceptionResNetV2FasterRcnnFeatureExtractor,
    ResNetFasterRcnnFeatureExtractor,
    ResNetFpnFasterRcnnFeatureExtractor,
)
from odkit.models.faster_rcnn_heads import MaskRCNNBoxPredictor, MaskRCNNMaskHead, RPNHead

WHERE = "model.faster_rcnn"


def _refuse(frcnn) -> None:
    if frcnn.num_classes <= 0:
        raise UnsupportedError(
            "num_classes must be > 0",
            where=f"{WHERE}.num_classes",
            hint="set it to the number of label-map classes",
        )
    if frcnn.number_of_stages not in (1, 2, 3):
        raise UnsupportedError(
            f"number_of_stages {frcnn.number_of_stages} is not supported",
            where=f"{WHERE}.number_of_stages",
            hint="use 1, 2 or 3 (3 = Mask R-CNN)",
        )
    mp = frcnn.second_stage_box_predictor.mask_rcnn_box_predictor
    if frcnn.number_of_stages == 3 and not mp.predict_instance_masks:
        raise UnsupportedError(
            "number_of_stages 3 needs a mask head",
            where=f"{WHERE}.second_stage_box_predictor.mask_rcnn_box_predictor.predict_instance_masks",
            hint="set predict_instance_masks: true or use number_of_stages 2",
        )
    if frcnn.HasField("context_config"):
        raise UnsupportedError(
            "context_config (Context R-CNN) is not supported",
            where=f"{WHERE}.context_config",
            hint="remove it",
        )
    for name in ("output_final_box_features", "output_final_box_rpn_features"):
        if getattr(frcnn, name):
            raise UnsupportedError(
                f"{name}: true is not supported", where=f"{WHERE}.{name}", hint="remove it"
            )
    for name in ("first_stage_minibatch_size", "second_stage_batch_size", "first_stage_max_proposals"):
        if getattr(frcnn, name) <= 0:
            raise UnsupportedError(f"{name} must be > 0", where=f"{WHERE}.{name}")
    for name in ("first_stage_positive_balance_fraction", "second_stage_balance_fraction"):
        v = getattr(frcnn, name)
        if not 0.0 < v <= 1.0:
            raise UnsupportedError(f"{name} must be in (0, 1], got {v}", where=f"{WHERE}.{name}")
    if frcnn.initial_crop_size <= 0 and frcnn.number_of_stages > 1:
        raise UnsupportedError("initial_crop_size must be set (e.g. 14)", where=f"{WHERE}.initial_crop_size")


def _fc_hyperparams(proto, where: str):
    return build_conv_hyperparams(proto, where)  # `op` does not change anything (see hyperparams_builder)


def _pooled_size(frcnn) -> int:
    size, k, st = frcnn.initial_crop_size, frcnn.maxpool_kernel_size, frcnn.maxpool_stride
    return (size - k) // st + 1 if k > 0 and st > 0 else size


def _fpn_levels(feature_extractor) -> tuple[int, int]:
    """(min_level, max_level) of the FPN: odkit.config.validate.pyramid_levels, the one reader of fpn.min_level
    (the fpn block's levels as TF, else TF's Faster R-CNN FPN extractor defaults 2 and 6)."""
    return pyramid_levels(feature_extractor, "faster_rcnn") or FPN_EXTRACTOR_DEFAULT_LEVELS["faster_rcnn"]


def _feature_extractor(frcnn, is_training: bool):
    fe = frcnn.feature_extractor
    where = f"{WHERE}.feature_extractor"
    known = {**RESNET_TYPES, **FPN_TYPES, **dict.fromkeys(INCEPTION_RESNET_V2_TYPES)}
    if fe.type not in known:
        raise UnsupportedError(
            f"feature extractor type {fe.type!r} is not supported",
            where=f"{where}.type",
            hint="use one of " + ", ".join(sorted(known)),
            substitute="faster_rcnn_resnet50_keras",
        )
    strides = (8, 16) if fe.type in INCEPTION_RESNET_V2_TYPES or fe.type in RESNET_TYPES else (16,)
    if fe.first_stage_features_stride not in strides:
        raise UnsupportedError(
            f"first_stage_features_stride {fe.first_stage_features_stride} is not supported with {fe.type}",
            where=f"{where}.first_stage_features_stride",
            hint="use " + " or ".join(str(v) for v in strides),
        )
    if fe.type in INCEPTION_RESNET_V2_TYPES:
        return InceptionResNetV2FasterRcnnFeatureExtractor(
            fe.first_stage_features_stride, batch_norm_trainable=fe.batch_norm_trainable
        )
    if fe.type in RESNET_TYPES:
        if fe.HasField("fpn"):
            raise UnsupportedError(
                f"fpn is not used by {fe.type}",
                where=f"{where}.fpn",
                hint="use the matching *_fpn_keras type or remove fpn",
            )
        return ResNetFasterRcnnFeatureExtractor(
            RESNET_TYPES[fe.type],
            batch_norm_trainable=fe.batch_norm_trainable,
            first_stage_features_stride=fe.first_stage_features_stride,
        )
    if not fe.HasField("conv_hyperparams"):
        raise UnsupportedError(
            f"{fe.type} needs conv_hyperparams (FPN layers)", where=f"{where}.conv_hyperparams"
        )
    fpn = fe.fpn
    min_level, max_level = _fpn_levels(fe)
    if not 2 <= min_level <= 5 or max_level < min_level:
        raise UnsupportedError(
            f"fpn levels {min_level}..{max_level} are not supported",
            where=f"{where}.fpn",
            hint="use min_level 2..5 and max_level >= min_level",
        )
    hp = build_conv_hyperparams(fe.conv_hyperparams, f"{where}.conv_hyperparams")
    depth = fpn.additional_layer_depth
    return ResNetFpnFasterRcnnFeatureExtractor(
        FPN_TYPES[fe.type],
        fe.batch_norm_trainable,
        min_level,
        max_level,
        depth,
        hp,
        fe.override_base_feature_extractor_hyperparams,
        depth * _pooled_size(frcnn) ** 2,
    )




def _mask_head(mp, in_channels: int, num_classes: int, bp_where: str):
    where = f"{bp_where}.mask_rcnn_box_predictor"
    if not mp.HasField("conv_hyperparams"):
        raise UnsupportedError(
            "predict_instance_masks needs conv_hyperparams (the mask head's convolutions)",
            where=f"{where}.conv_hyperparams",
        )
    for name in ("mask_height", "mask_width", "mask_prediction_num_conv_layers"):
        if getattr(mp, name) <= 0:
            raise UnsupportedError(f"{name} must be > 0", where=f"{where}.{name}")
    if mp.mask_prediction_conv_depth < 0:
        raise UnsupportedError(
            "mask_prediction_conv_depth must be >= 0 (0 = automatic)", where=f"{where}.mask_prediction_conv_depth"
        )
    hp = build_conv_hyperparams(mp.conv_hyperparams, f"{where}.conv_hyperparams")
    return MaskRCNNMaskHead(
        in_channels,
        num_classes,
        hp,
        mask_height=mp.mask_height,
        mask_width=mp.mask_width,
        num_conv_layers=mp.mask_prediction_num_conv_layers,
        conv_depth=mp.mask_prediction_conv_depth,
        class_agnostic=mp.masks_are_class_agnostic,
        convolve_then_upsample=mp.convolve_then_upsample_masks,
    )


def _anchor_generator(frcnn):
    """The first stage's anchors: grid_anchor_generator on one feature map, multiscale over the FPN levels."""
    where = f"{WHERE}.first_stage_anchor_generator"
    kind = frcnn.first_stage_anchor_generator.WhichOneof("anchor_generator_oneof")
    multi_level = "_fpn_" in frcnn.feature_extractor.type
    expected = "multiscale_anchor_generator" if multi_level else "grid_anchor_generator"
    if kind != expected:
        raise UnsupportedError(
            f"{kind or 'no anchor generator'} is not supported with {frcnn.feature_extractor.type!r}",
            where=where,
            hint=f"use {expected}",
        )
    anchor_generator = anchor_generator_builder.build(frcnn.first_stage_anchor_generator, where)
    if multi_level:
        levels = _fpn_levels(frcnn.feature_extractor)
        ms = frcnn.first_stage_anchor_generator.multiscale_anchor_generator
        if (ms.min_level, ms.max_level) != levels:
            raise UnsupportedError(
                f"anchor levels {ms.min_level}..{ms.max_level} differ from the FPN levels "
                f"{levels[0]}..{levels[1]}",
                where=where,
            )
    return anchor_generator


def _rpn_head(frcnn, extractor, num_anchors_per_location):
    rpn_hp = build_conv_hyperparams(
        frcnn.first_stage_box_predictor_conv_hyperparams
        if frcnn.HasField("first_stage_box_predictor_conv_hyperparams")
        else None,
        f"{WHERE}.first_stage_box_predictor_conv_hyperparams",
    )
    if frcnn.first_stage_box_predictor_kernel_size <= 0 or frcnn.first_stage_box_predictor_depth <= 0:
        raise UnsupportedError("first_stage_box_predictor_kernel_size and _depth must be > 0", where=WHERE)
    if frcnn.first_stage_atrous_rate < 1:
        raise UnsupportedError(
            "first_stage_atrous_rate must be >= 1", where=f"{WHERE}.first_stage_atrous_rate"
        )
    return RPNHead(
        extractor.proposal_channels,
        frcnn.first_stage_box_predictor_depth,
        frcnn.first_stage_box_predictor_kernel_size,
        num_anchors_per_location,
        rpn_hp,
        atrous_rate=frcnn.first_stage_atrous_rate,
    )


def _second_stage_heads(frcnn, extractor, num_classes: int):
    """(box classifier, mask head): (None, None) for number_of_stages 1; the mask head with
    predict_instance_masks."""
    if frcnn.number_of_stages <= 1:
        return None, None
    bp_where = f"{WHERE}.second_stage_box_predictor"
    if frcnn.second_stage_box_predictor.WhichOneof("box_predictor_oneof") != "mask_rcnn_box_predictor":
        raise UnsupportedError(
            "only mask_rcnn_box_predictor is supported as the second stage box predictor", where=bp_where
        )
    mp = frcnn.second_stage_box_predictor.mask_rcnn_box_predictor
    if mp.predict_keypoints:
        raise UnsupportedError(
            "predict_keypoints: true is not supported",
            where=f"{bp_where}.mask_rcnn_box_predictor.predict_keypoints",
        )
    if mp.box_code_size != 4:
        raise UnsupportedError(
            "box_code_size must be 4", where=f"{bp_where}.mask_rcnn_box_predictor.box_code_size"
        )
    if mp.use_dropout and not 0.0 < mp.dropout_keep_probability <= 1.0:
        raise UnsupportedError(
            "dropout_keep_probability must be in (0, 1]",
            where=f"{bp_where}.mask_rcnn_box_predictor.dropout_keep_probability",
        )
    fc_hp = _fc_hyperparams(mp.fc_hyperparams, f"{bp_where}.mask_rcnn_box_predictor.fc_hyperparams")
    box_predictor = MaskRCNNBoxPredictor(
        extractor.box_classifier_channels,
        num_classes,
        fc_hp,
        use_dropout=mp.use_dropout,
        dropout_keep_probability=mp.dropout_keep_probability,
        share_box_across_classes=mp.share_box_across_classes,
    )
    mask_head = None
    if mp.predict_instance_masks:
        mask_head = _mask_head(mp, extractor.box_classifier_channels, num_classes, bp_where)
    return box_predictor, mask_head


def _second_stage_losses(frcnn):
    """(classification loss, hard example miner or None) of the second stage."""
    cls_loss = losses_builder.build_faster_rcnn_classification_loss(
        frcnn.second_stage_classification_loss, f"{WHERE}.second_stage_classification_loss"
    )
    miner = None
    if frcnn.HasField("hard_example_miner"):
        miner = losses_builder.build_hard_example_miner(
            frcnn.hard_example_miner,
            frcnn.second_stage_classification_loss_weight,
            frcnn.second_stage_localization_loss_weight,
        )
    return cls_loss, miner


def _meta_config(frcnn) -> FasterRcnnConfig:
    """The scalar settings the meta-architecture reads."""
    return FasterRcnnConfig(
        number_of_stages=frcnn.number_of_stages,
        first_stage_minibatch_size=frcnn.first_stage_minibatch_size,
        first_stage_positive_balance_fraction=frcnn.first_stage_positive_balance_fraction,
        first_stage_nms_score_threshold=frcnn.first_stage_nms_score_threshold,
        first_stage_nms_iou_threshold=frcnn.first_stage_nms_iou_threshold,
        first_stage_max_proposals=frcnn.first_stage_max_proposals,
        first_stage_localization_loss_weight=frcnn.first_stage_localization_loss_weight,
        first_stage_objectness_loss_weight=frcnn.first_stage_objectness_loss_weight,
        initial_crop_size=frcnn.initial_crop_size,
        maxpool_kernel_size=frcnn.maxpool_kernel_size,
        maxpool_stride=frcnn.maxpool_stride,
        second_stage_batch_size=frcnn.second_stage_batch_size,
        second_stage_balance_fraction=frcnn.second_stage_balance_fraction,
        second_stage_localization_loss_weight=frcnn.second_stage_localization_loss_weight,
        second_stage_classification_loss_weight=frcnn.second_stage_classification_loss_weight,
        clip_anchors_to_image=frcnn.clip_anchors_to_image,
        second_stage_mask_prediction_loss_weight=frcnn.second_stage_mask_prediction_loss_weight,
    )


def build_faster_rcnn(frcnn, is_training: bool, feature_extractor=None):
    """Build the model; `feature_extractor` (optional) replaces the configured one (tests, benchmarks)."""
    _refuse(frcnn)
    num_classes = int(frcnn.num_classes)
    extractor = feature_extractor or _feature_extractor(frcnn, is_training)
    anchor_generator = _anchor_generator(frcnn)
    rpn_head = _rpn_head(frcnn, extractor, anchor_generator.num_anchors_per_location())
    box_predictor, mask_head = _second_stage_heads(frcnn, extractor, num_classes)
    nms, score_converter = post_processing_builder.build(
        frcnn.second_stage_post_processing, f"{WHERE}.second_stage_post_processing"
    )
    nms.change_coordinate_frame = True  # TF passes change_coordinate_frame=True in the second stage
    cls_loss, miner = _second_stage_losses(frcnn)
    model = FasterRCNNMetaArch(
        num_classes=num_classes,
        feature_extractor=extractor,
        anchor_generator=anchor_generator,
        rpn_head=rpn_head,
        box_predictor=box_predictor,
        second_stage_nms=nms,
        second_stage_score_converter=score_converter,
        config=_meta_config(frcnn),
        second_stage_classification_loss=cls_loss,
        hard_example_miner=miner,
        input_size=fixed_input_size(frcnn),
        mask_head=mask_head,
    )
    model.train(is_training)
    return model
