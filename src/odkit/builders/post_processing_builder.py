"""`PostProcessing` proto -> `(nms_fn, score_converter)` (TF OD API `post_processing_builder`).

`build(post_processing_config, where="post_processing")` returns an
`odkit.core.post_processing.BatchNonMaxSuppression` (`nms(boxes [B,A,q,4], scores [B,A,C], clip_window)`)
and a `ScoreConverter` module (IDENTITY / SIGMOID / SOFTMAX with logit_scale).
`build_nms(batch_non_max_suppression_config, where)` builds the NMS alone (Faster R-CNN first stage).
Honoured: score/iou thresholds, max_detections_per_class, max_total_detections, use_class_agnostic_nms
(max_classes_per_detection 1), soft_nms_sigma, change_coordinate_frame; use_static_shapes,
use_partitioned_nms, use_combined_nms, use_hard_nms and use_cpu_nms only choose TF kernels and do not
change odkit's result. calibration_config is refused.
"""

from __future__ import annotations

from odkit.core.post_processing import BatchNonMaxSuppression, ScoreConverter
from odkit.errors import UnsupportedError

_CONVERTERS = {0: "IDENTITY", 1: "SIGMOID", 2: "SOFTMAX"}


def build_nms(config, where: str = "post_processing.batch_non_max_suppression") -> BatchNonMaxSuppression:
    if not 0.0 <= config.iou_threshold <= 1.0:
        raise UnsupportedError(
            f"iou_threshold must be in [0, 1], got {config.iou_threshold}", where=f"{where}.iou_threshold"
        )
    if config.max_detections_per_class <= 0 or config.max_total_detections <= 0:
        raise UnsupportedError("max_detections_per_class and max_total_detections must be > 0", where=where)
    if config.use_class_agnostic_nms and config.max_classes_per_detection != 1:
        raise UnsupportedError(
            "max_classes_per_detection other than 1 is not supported",
            where=f"{where}.max_classes_per_detection",
            hint="set it to 1",
        )
    if config.soft_nms_sigma < 0:
        raise UnsupportedError("soft_nms_sigma must be >= 0", where=f"{where}.soft_nms_sigma")
    return BatchNonMaxSuppression(
        score_thresh=config.score_threshold,
        iou_thresh=config.iou_threshold,
        max_size_per_class=config.max_detections_per_class,
        max_total_size=config.max_total_detections,
        change_coordinate_frame=config.change_coordinate_frame,
        use_class_agnostic_nms=config.use_class_agnostic_nms,
        soft_nms_sigma=config.soft_nms_sigma,
    )


def build(config, where: str = "post_processing") -> tuple[BatchNonMaxSuppression, ScoreConverter]:
    if config.HasField("calibration_config"):
        raise UnsupportedError(
            "calibration_config is not supported", where=f"{where}.calibration_config", hint="remove it"
        )
    if config.logit_scale == 0:
        raise UnsupportedError("logit_scale must be non-zero", where=f"{where}.logit_scale")
    nms = build_nms(config.batch_non_max_suppression, f"{where}.batch_non_max_suppression")
    converter = ScoreConverter(_CONVERTERS[int(config.score_converter)], config.logit_scale)
    return nms, converter
