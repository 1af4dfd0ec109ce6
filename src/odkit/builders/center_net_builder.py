"""`CenterNet` proto -> `odkit.models.center_net.CenterNetMetaArch` (TF OD API model_builder._build_center_net_model).

`build_center_net(center_net_proto, is_training) -> DetectionModel`. Honoured: num_classes, feature_extractor
(type, channel_means, channel_stds, bgr_ordering; depth_multiplier, use_separable_conv and
upsampling_interpolation for the MobileNet v2 FPN types), image_resizer (input pipeline), use_depthwise
(prediction heads), compute_heatmap_sparse (TF kernel choice, same targets), object_center_params
(classification_loss, object_center_loss_weight, heatmap_bias_init, min_box_overlap_iou, max_box_predictions,
peak_max_pool_kernel_size, center_head_params), object_detection_task (task/offset/scale loss weights,
localization_loss, scale/offset_head_params), post_processing (batch_non_max_suppression).

keypoint_estimation_task / keypoint_label_map_path: `odkit.builders.center_net_keypoint_builder` (tasks after
the detection task).
Refused by name (UnsupportedError): keypoint_weights_for_center (keypoint-derived centres),
deepmac_mask_estimation (DeepMAC), mask_estimation_task, densepose_estimation_task, track_estimation_task,
temporal_offset_task, use_labeled_classes, output_prediction_dict, a config without object_detection_task,
feature extractor types other than `odkit.models.center_net_feature_extractors.SUPPORTED`, and feature-extractor
options the chosen type does not use (TF would ignore them).
"""

from __future__ import annotations

from odkit.builders.input_size import fixed_input_size
from odkit.errors import UnsupportedError

WHERE = "model.center_net"
LOCALIZATION_LOSSES = ("l1_localization_loss", "weighted_l2", "weighted_smooth_l1")
CENTER_LOSSES = ("penalty_reduced_logistic_focal_loss", "weighted_sigmoid", "weighted_sigmoid_focal")
OTHER_TASKS = {
    "deepmac_mask_estimation": "DeepMAC mask estimation is not implemented",
    "mask_estimation_task": "CenterNet mask estimation is not implemented",
    "densepose_estimation_task": "DensePose estimation is not implemented",
    "track_estimation_task": "CenterNet tracking is not implemented",
    "temporal_offset_task": "CenterNet temporal offsets are not implemented",
}


def _head(params, where: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """TF: a set *_head_params gives the lists as written; unset means one 3x3 conv with 256 filters."""
    if params is None:
        return (3,), (256,)
    kernels, filters = tuple(int(k) for k in params.kernel_sizes), tuple(int(f) for f in params.num_filters)
    if len(kernels) != len(filters):
        raise UnsupportedError(f"kernel_sizes ({len(kernels)}) and num_filters ({len(filters)}) differ in length",
                               where=where, hint="give one kernel size per filter count")
    if any(k <= 0 for k in kernels) or any(f <= 0 for f in filters):
        raise UnsupportedError("kernel_sizes and num_filters must be > 0", where=where)
    return kernels, filters


def _refuse(cn) -> None:
    if cn.num_classes <= 0:
        raise UnsupportedError("num_classes must be > 0", where=f"{WHERE}.num_classes",
                               hint="set it to the number of label-map classes")
    for name, reason in OTHER_TASKS.items():
        if cn.HasField(name):
            raise UnsupportedError(reason, where=f"{WHERE}.{name}", hint="remove it")
    oc = cn.object_center_params
    if len(oc.keypoint_weights_for_center):
        raise UnsupportedError("keypoint_weights_for_center needs keypoint estimation, not implemented yet",
                               where=f"{WHERE}.object_center_params.keypoint_weights_for_center", hint="remove it")
    if oc.use_labeled_classes:
        raise UnsupportedError("use_labeled_classes is not supported (needs image/class/label groundtruth)",
                               where=f"{WHERE}.object_center_params.use_labeled_classes", hint="remove it")
    if cn.output_prediction_dict:
        raise UnsupportedError("output_prediction_dict is not supported", where=f"{WHERE}.output_prediction_dict",
                               hint="remove it")
    if not cn.HasField("object_detection_task"):
        raise UnsupportedError("a CenterNet without object_detection_task is not supported yet",
                               where=WHERE, hint="add object_detection_task { localization_loss { l1_localization_loss {} } }")
    if oc.max_box_predictions <= 0:
        raise UnsupportedError("max_box_predictions must be > 0", where=f"{WHERE}.object_center_params.max_box_predictions")
    if oc.peak_max_pool_kernel_size <= 0:
        raise UnsupportedError("peak_max_pool_kernel_size must be > 0",
                               where=f"{WHERE}.object_center_params.peak_max_pool_kernel_size")
    if not 0.0 < oc.min_box_overlap_iou < 1.0:
        raise UnsupportedError(f"min_box_overlap_iou must be in (0, 1), got {oc.min_box_overlap_iou}",
                               where=f"{WHERE}.object_center_params.min_box_overlap_iou")


def build_feature_extractor(fe, where: str = f"{WHERE}.feature_extractor"):
    from odkit.models.center_net_feature_extractors import (
        MOBILENET_V2,
        MOBILENET_V2_FPN,
        SUPPORTED,
        build_center_net_extractor,
    )

    kind = fe.type
    if kind not in SUPPORTED:
        raise UnsupportedError(f"CenterNet feature extractor {kind or '(empty)'!r} is not supported",
                               where=f"{where}.type", hint=f"use one of {', '.join(SUPPORTED)}")
    for name, n in (("channel_means", len(fe.channel_means)), ("channel_stds", len(fe.channel_stds))):
        if n not in (0, 3):
            raise UnsupportedError(f"{name} needs 3 values (one per channel), got {n}", where=f"{where}.{name}")
    if any(s == 0 for s in fe.channel_stds):
        raise UnsupportedError("channel_stds must be non-zero", where=f"{where}.channel_stds")
    if fe.use_depthwise:
        raise UnsupportedError("feature_extractor.use_depthwise has no effect in the TF OD API's CenterNet extractors",
                               where=f"{where}.use_depthwise",
                               hint="remove it (use_separable_conv for mobilenet_v2_fpn; center_net.use_depthwise for the heads)")
    unused = [("use_separable_conv", False), ("upsampling_interpolation", "nearest")]
    if kind not in MOBILENET_V2:
        unused.append(("depth_multiplier", 1.0))
    if kind not in MOBILENET_V2_FPN:
        for name, default in unused:
            if fe.HasField(name) and getattr(fe, name) != default:
                raise UnsupportedError(f"{name} is not used by the {kind} feature extractor", where=f"{where}.{name}",
                                       hint="remove it (only mobilenet_v2_fpn uses it)")
    elif fe.upsampling_interpolation not in ("nearest", "bilinear"):
        raise UnsupportedError(f"upsampling_interpolation {fe.upsampling_interpolation!r} is not supported",
                               where=f"{where}.upsampling_interpolation", hint="use nearest or bilinear")
    if fe.depth_multiplier <= 0:
        raise UnsupportedError("depth_multiplier must be > 0", where=f"{where}.depth_multiplier")
    return build_center_net_extractor(
        kind, channel_means=list(fe.channel_means), channel_stds=list(fe.channel_stds),
        bgr_ordering=bool(fe.bgr_ordering), depth_multiplier=float(fe.depth_multiplier),
        use_separable_conv=bool(fe.use_separable_conv), upsampling_interpolation=fe.upsampling_interpolation)


def build_object_detection_task(od, where: str = f"{WHERE}.object_detection_task"):
    from odkit.builders.losses_builder import build_localization_loss
    from odkit.models.center_net import ObjectDetectionTask

    kind = od.localization_loss.WhichOneof("localization_loss")
    if kind not in LOCALIZATION_LOSSES:
        raise UnsupportedError(f"localization_loss {kind or '(empty)'} is not supported for CenterNet",
                               where=f"{where}.localization_loss", hint="use l1_localization_loss")
    return ObjectDetectionTask(
        build_localization_loss(od.localization_loss, f"{where}.localization_loss"),
        scale_loss_weight=od.scale_loss_weight, offset_loss_weight=od.offset_loss_weight,
        task_loss_weight=od.task_loss_weight,
        scale_head=_head(od.scale_head_params if od.HasField("scale_head_params") else None,
                         f"{where}.scale_head_params"),
        offset_head=_head(od.offset_head_params if od.HasField("offset_head_params") else None,
                          f"{where}.offset_head_params"))


def build_center_net(cn, is_training: bool):
    """`CenterNet` proto -> CenterNetMetaArch (train or eval mode)."""
    from odkit.builders.losses_builder import build_classification_loss
    from odkit.builders.post_processing_builder import build_nms
    from odkit.models.center_net import CenterNetMetaArch

    _refuse(cn)
    oc = cn.object_center_params
    where_oc = f"{WHERE}.object_center_params"
    kind = oc.classification_loss.WhichOneof("classification_loss")
    if kind not in CENTER_LOSSES:
        raise UnsupportedError(f"object centre classification_loss {kind or '(empty)'} is not supported",
                               where=f"{where_oc}.classification_loss",
                               hint="use penalty_reduced_logistic_focal_loss { alpha: 2.0 beta: 4.0 }")
    center_loss = build_classification_loss(oc.classification_loss, f"{where_oc}.classification_loss")
    extractor = build_feature_extractor(cn.feature_extractor)
    from odkit.builders.center_net_keypoint_builder import build_keypoint_tasks

    tasks = [build_object_detection_task(cn.object_detection_task), *build_keypoint_tasks(cn, _head)]
    nms_fn = None
    if cn.HasField("post_processing"):
        pp = cn.post_processing
        if pp.HasField("calibration_config"):
            raise UnsupportedError("calibration_config is not supported",
                                   where=f"{WHERE}.post_processing.calibration_config", hint="remove it")
        nms_fn = build_nms(pp.batch_non_max_suppression, f"{WHERE}.post_processing.batch_non_max_suppression")
    model = CenterNetMetaArch(
        num_classes=int(cn.num_classes), feature_extractor=extractor, center_loss=center_loss, tasks=tasks,
        object_center_loss_weight=oc.object_center_loss_weight,
        heatmap_bias_init=oc.heatmap_bias_init,
        min_box_overlap_iou=oc.min_box_overlap_iou, max_box_predictions=oc.max_box_predictions,
        peak_max_pool_kernel_size=oc.peak_max_pool_kernel_size,
        center_head=_head(oc.center_head_params if oc.HasField("center_head_params") else None,
                          f"{where_oc}.center_head_params"),
        use_depthwise=bool(cn.use_depthwise), nms_fn=nms_fn, input_size=fixed_input_size(cn))
    model.train(is_training)
    return model
