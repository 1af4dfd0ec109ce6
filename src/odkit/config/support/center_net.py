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
_KP = "keypoint-derived object centres are not implemented; remove it"
_KB = "odkit.builders.center_net_keypoint_builder"
_KM = "odkit.models.center_net_keypoints"

RULES: dict[str, Rule] = {
    "CenterNet.compute_heatmap_sparse": Honoured(where=_T + " (TF kernel choice; same heatmap)"),
    "CenterNet.deepmac_mask_estimation": Refused(reason="DeepMAC mask estimation is not implemented"),
    "CenterNet.densepose_estimation_task": Refused(reason="DensePose estimation is not implemented"),
    "CenterNet.KeypointEstimation.argmax_postprocessing": Values(allowed={False}, where=_KB),
    "CenterNet.KeypointEstimation.box_scale": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.candidate_ranking_mode": Values(
        allowed={"min_distance", "score_distance_ratio", "score_scaled_distance_ratio", "gaussian_weighted"},
        where=_KM),
    "CenterNet.KeypointEstimation.candidate_search_scale": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.clip_out_of_frame_keypoints": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.gaussian_denom_ratio": Honoured(where=_KB + " (argmax postprocessing only)"),
    "CenterNet.KeypointEstimation.heatmap_bias_init": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.heatmap_head_params": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.keypoint_candidate_score_threshold": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.keypoint_class_name": Honoured(where=_KB),
    "CenterNet.KeypointEstimation.keypoint_depth_loss_weight": Honoured(where=_KB + " (depth only; depth refused)"),
    "CenterNet.KeypointEstimation.keypoint_heatmap_loss_weight": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.keypoint_label_to_std": Honoured(where=_KB),
    "CenterNet.KeypointEstimation.keypoint_offset_loss_weight": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.keypoint_regression_loss_weight": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.loss": Honoured(where=_KB + " (classification + localization losses)"),
    "CenterNet.KeypointEstimation.num_candidates_per_keypoint": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.offset_head_params": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.offset_peak_radius": Honoured(where="odkit.core.center_net_keypoint_targets"),
    "CenterNet.KeypointEstimation.peak_max_pool_kernel_size": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.per_keypoint_depth": Values(allowed={False}, where=_KB),
    "CenterNet.KeypointEstimation.per_keypoint_offset": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.predict_depth": Values(allowed={False}, where=_KB),
    "CenterNet.KeypointEstimation.regress_head_params": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.rescore_instances": Values(allowed={False}, where=_KB),
    "CenterNet.KeypointEstimation.rescoring_threshold": Honoured(where=_KB + " (rescoring only; rescoring refused)"),
    "CenterNet.KeypointEstimation.score_distance_multiplier": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.score_distance_offset": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.std_dev_multiplier": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.task_loss_weight": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.task_name": Honoured(where=_KM),
    "CenterNet.KeypointEstimation.unmatched_keypoint_score": Honoured(where=_KM),
    "CenterNet.keypoint_label_map_path": Honoured(where=_KB),
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
