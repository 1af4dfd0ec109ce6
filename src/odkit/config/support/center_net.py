"""Config support rules for the CenterNet area (CenterNet, CenterNetFeatureExtractor, the object centre and
object detection tasks; the penalty-reduced focal loss).

Format (see odkit.config.support): ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages ``"Outer.Inner.field"``), values from odkit.config.support.rules.
Add a rule only for what the code really honours; `odkit config check` reports every other set field.
Keep keys sorted; `tests/test_config_support.py` checks that each key names a real field.
"""

from __future__ import annotations

from odkit.config.support.rules import Honoured, Refused, Rule, Values

__all__ = ["RULES", "Honoured", "Refused", "Values"]

_B = "odkit.builders.center_net_builder"
_M = "odkit.models.center_net"
_FE = "odkit.models.center_net_feature_extractors"
_T = "odkit.core.center_net_targets"
_KP = "CenterNet keypoint estimation is not implemented yet (issue 16); remove it to train boxes only"

RULES: dict[str, Rule] = {
    "CenterNet.compute_heatmap_sparse": Honoured(where=_T + " (TF kernel choice; same heatmap)"),
    "CenterNet.deepmac_mask_estimation": Refused(reason="DeepMAC mask estimation is not implemented"),
    "CenterNet.densepose_estimation_task": Refused(reason="DensePose estimation is not implemented"),
    "CenterNet.keypoint_estimation_task": Refused(reason=_KP),
    "CenterNet.keypoint_label_map_path": Refused(reason=_KP),
    "CenterNet.mask_estimation_task": Refused(reason="CenterNet mask estimation is not implemented"),
    "CenterNet.num_classes": Honoured(where=_B),
    "CenterNet.ObjectCenterParams.center_head_params": Honoured(where=_M),
    "CenterNet.ObjectCenterParams.classification_loss": Honoured(where=_B + " (penalty_reduced_logistic_focal_loss, "
                                                                 "weighted_sigmoid, weighted_sigmoid_focal)"),
    "CenterNet.ObjectCenterParams.heatmap_bias_init": Honoured(where=_M),
    "CenterNet.ObjectCenterParams.keypoint_weights_for_center": Refused(reason=_KP),
    "CenterNet.ObjectCenterParams.max_box_predictions": Honoured(where=_M),
    "CenterNet.ObjectCenterParams.min_box_overlap_iou": Honoured(where=_T),
    "CenterNet.ObjectCenterParams.object_center_loss_weight": Honoured(where=_M),
    "CenterNet.ObjectCenterParams.peak_max_pool_kernel_size": Honoured(where="odkit.core.heatmap_peaks"),
    "CenterNet.ObjectCenterParams.use_labeled_classes": Values(allowed={False}, where=_B),
    "CenterNet.ObjectDetection.localization_loss": Honoured(where=_B + " (l1_localization_loss, weighted_l2, "
                                                            "weighted_smooth_l1)"),
    "CenterNet.ObjectDetection.offset_head_params": Honoured(where=_M),
    "CenterNet.ObjectDetection.offset_loss_weight": Honoured(where=_M),
    "CenterNet.ObjectDetection.scale_head_params": Honoured(where=_M),
    "CenterNet.ObjectDetection.scale_loss_weight": Honoured(where=_M),
    "CenterNet.ObjectDetection.task_loss_weight": Honoured(where=_M),
    "CenterNet.output_prediction_dict": Values(allowed={False}, where=_B),
    "CenterNet.temporal_offset_task": Refused(reason="CenterNet temporal offsets are not implemented"),
    "CenterNet.track_estimation_task": Refused(reason="CenterNet tracking is not implemented"),
    "CenterNet.use_depthwise": Honoured(where=_M),
    "CenterNetFeatureExtractor.bgr_ordering": Honoured(where=_FE),
    "CenterNetFeatureExtractor.channel_means": Honoured(where=_FE),
    "CenterNetFeatureExtractor.channel_stds": Honoured(where=_FE),
    "CenterNetFeatureExtractor.depth_multiplier": Honoured(where=_FE + " (mobilenet_v2_fpn*; refused for others)"),
    "CenterNetFeatureExtractor.type": Values(
        allowed={"resnet_v1_50_fpn", "resnet_v1_101_fpn", "resnet_v2_50", "resnet_v2_101", "mobilenet_v2_fpn",
                 "mobilenet_v2_fpn_sep_conv", "hourglass_10", "hourglass_20", "hourglass_32", "hourglass_52",
                 "hourglass_104"},
        where=_FE),
    "CenterNetFeatureExtractor.upsampling_interpolation": Values(
        allowed={"nearest", "bilinear"}, where=_FE + " (mobilenet_v2_fpn*; refused for others)"),
    "CenterNetFeatureExtractor.use_depthwise": Values(allowed={False}, where=_B + " (TF ignores it)"),
    "CenterNetFeatureExtractor.use_separable_conv": Honoured(where=_FE + " (mobilenet_v2_fpn*; refused for others)"),
    "PenaltyReducedLogisticFocalLoss.alpha": Honoured(where="odkit.core.losses"),
    "PenaltyReducedLogisticFocalLoss.beta": Honoured(where="odkit.core.losses"),
}
