"""Config support rules for the Faster R-CNN area (FasterRcnn, FasterRcnnFeatureExtractor and its heads), plus
the core pieces built by the core builders (anchor generators, box coders, matchers, similarity calculators,
loss kinds, hard example miner, random example sampler, post-processing), shared with SSD.

Format (see odkit.config.support): ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages ``"Outer.Inner.field"``), values from odkit.config.support.rules:

    "TrainConfig.batch_size": Honoured(where="odkit.training.trainer"),
    "PostProcessing.score_converter": Values(allowed={"SIGMOID", "SOFTMAX"}, where="odkit.builders.post_processing"),
    "TrainConfig.sync_replicas": Refused(reason="TF1 parameter-server option; odkit trains synchronously"),

Add a rule only for what the code really honours; `odkit config check` reports every other set field.
Keep keys sorted; `tests/test_config_support.py` checks that each key names a real field.
"""

from __future__ import annotations

from odkit.config.support.rules import Honoured, Refused, Rule, Values

__all__ = ["RULES", "Honoured", "Refused", "Values"]

_FRCNN = "odkit.models.faster_rcnn"
_FRCNN_B = "odkit.builders.faster_rcnn_builder"
_HEADS = "odkit.models.faster_rcnn_heads.MaskRCNNMaskHead"
_ANCHORS = "odkit.core.anchors"
_CODERS = "odkit.builders.box_coder_builder"
_MATCH = "odkit.builders.matcher_builder"
_SIM = "odkit.builders.region_similarity_calculator_builder"
_LOSS = "odkit.builders.losses_builder"
_NMS = "odkit.builders.post_processing_builder"
_SAME = "odkit.core.post_processing (TF kernel choice; same result)"

_FASTER_RCNN: dict[str, Rule] = {
    "FasterRcnn.clip_anchors_to_image": Honoured(where=_FRCNN),
    "FasterRcnn.context_config": Refused(
        reason="Context R-CNN attention is not implemented; remove context_config"
    ),
    "FasterRcnn.first_stage_atrous_rate": Honoured(where="odkit.models.faster_rcnn_heads"),
    "FasterRcnn.first_stage_box_predictor_depth": Honoured(where="odkit.models.faster_rcnn_heads"),
    "FasterRcnn.first_stage_box_predictor_kernel_size": Honoured(where="odkit.models.faster_rcnn_heads"),
    "FasterRcnn.first_stage_localization_loss_weight": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_max_proposals": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_minibatch_size": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_nms_iou_threshold": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_nms_score_threshold": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_objectness_loss_weight": Honoured(where=_FRCNN),
    "FasterRcnn.first_stage_positive_balance_fraction": Honoured(where=_FRCNN),
    "FasterRcnn.inplace_batchnorm_update": Honoured(
        where="torch batch norm updates its statistics in forward"
    ),
    "FasterRcnn.initial_crop_size": Honoured(where="odkit.models.faster_rcnn_heads.crop_and_resize"),
    "FasterRcnn.maxpool_kernel_size": Honoured(where=_FRCNN),
    "FasterRcnn.maxpool_stride": Honoured(where=_FRCNN),
    "FasterRcnn.num_classes": Honoured(where=_FRCNN_B),
    "FasterRcnn.number_of_stages": Values(allowed={1, 2, 3}, where=_FRCNN),
    "FasterRcnn.output_final_box_features": Values(allowed={False}, where=_FRCNN_B),
    "FasterRcnn.output_final_box_rpn_features": Values(allowed={False}, where=_FRCNN_B),
    "FasterRcnn.second_stage_balance_fraction": Honoured(where=_FRCNN),
    "FasterRcnn.second_stage_batch_size": Honoured(where=_FRCNN),
    "FasterRcnn.resize_masks": Honoured(
        where="odkit.inputs (masks reach the model resized and padded with the image either way)"
    ),
    "FasterRcnn.second_stage_classification_loss_weight": Honoured(where=_FRCNN),
    "FasterRcnn.second_stage_localization_loss_weight": Honoured(where=_FRCNN),
    "FasterRcnn.second_stage_mask_prediction_loss_weight": Honoured(where=_FRCNN),
    "FasterRcnn.use_combined_nms_in_first_stage": Honoured(where=_SAME),
    "FasterRcnn.use_matmul_crop_and_resize": Honoured(where="odkit.models.faster_rcnn_heads (same crops)"),
    "FasterRcnn.use_matmul_gather_in_matcher": Honoured(where="odkit.core.matchers (same result)"),
    "FasterRcnn.use_partitioned_nms_in_first_stage": Honoured(where=_SAME),
    "FasterRcnn.use_static_balanced_label_sampler": Honoured(where="odkit.core.samplers (same sample sizes)"),
    "FasterRcnn.use_static_shapes": Honoured(where="odkit always uses padded static shapes"),
    "FasterRcnn.use_static_shapes_for_eval": Honoured(where="odkit always uses padded static shapes"),
    "FasterRcnnFeatureExtractor.batch_norm_trainable": Honoured(
        where="odkit.models.faster_rcnn_feature_extractors"
    ),
    "FasterRcnnFeatureExtractor.first_stage_features_stride": Values(
        allowed={8, 16}, where=_FRCNN_B + " (8: atrous ResNet / Inception-ResNet-v2; FPN: 16)"
    ),
    "FasterRcnnFeatureExtractor.override_base_feature_extractor_hyperparams": Honoured(
        where="odkit.models.faster_rcnn_feature_extractors"
    ),
    "FasterRcnnFeatureExtractor.type": Values(
        allowed={
            "faster_rcnn_resnet50_keras",
            "faster_rcnn_resnet101_keras",
            "faster_rcnn_resnet152_keras",
            "faster_rcnn_resnet50",
            "faster_rcnn_resnet101",
            "faster_rcnn_resnet152",
            "faster_rcnn_resnet50_fpn_keras",
            "faster_rcnn_resnet101_fpn_keras",
            "faster_rcnn_resnet152_fpn_keras",
            "faster_rcnn_inception_resnet_v2_keras",
            "faster_rcnn_inception_resnet_v2",
        },
        where="odkit.models.faster_rcnn_feature_extractors",
    ),
    "MaskRCNNBoxPredictor.box_code_size": Values(allowed={4}, where="odkit.models.faster_rcnn_heads"),
    "MaskRCNNBoxPredictor.conv_hyperparams": Honoured(where=_FRCNN_B + " (mask head convolutions)"),
    "MaskRCNNBoxPredictor.convolve_then_upsample_masks": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.dropout_keep_probability": Honoured(where="odkit.models.faster_rcnn_heads"),
    "MaskRCNNBoxPredictor.fc_hyperparams": Honoured(
        where=_FRCNN_B + " (unsupported parts are refused at build)"
    ),
    "MaskRCNNBoxPredictor.mask_height": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.mask_prediction_conv_depth": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.mask_prediction_num_conv_layers": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.mask_width": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.masks_are_class_agnostic": Honoured(where=_HEADS),
    "MaskRCNNBoxPredictor.predict_instance_masks": Honoured(where=_FRCNN_B),
    "MaskRCNNBoxPredictor.predict_keypoints": Values(allowed={False}, where=_FRCNN_B),
    "MaskRCNNBoxPredictor.share_box_across_classes": Honoured(where="odkit.models.faster_rcnn_heads"),
    "MaskRCNNBoxPredictor.use_dropout": Honoured(where="odkit.models.faster_rcnn_heads"),
}

_CORE: dict[str, Rule] = {
    "AnchorGrid.aspect_ratios": Honoured(where=_ANCHORS),
    "AnchorGrid.base_sizes": Honoured(where=_ANCHORS),
    "AnchorGrid.height_offset": Honoured(where=_ANCHORS),
    "AnchorGrid.height_stride": Honoured(where=_ANCHORS),
    "AnchorGrid.width_offset": Honoured(where=_ANCHORS),
    "AnchorGrid.width_stride": Honoured(where=_ANCHORS),
    "ArgMaxMatcher.force_match_for_each_row": Honoured(where=_MATCH),
    "ArgMaxMatcher.ignore_thresholds": Honoured(where=_MATCH),
    "ArgMaxMatcher.matched_threshold": Honoured(where=_MATCH),
    "ArgMaxMatcher.negatives_lower_than_unmatched": Honoured(where=_MATCH),
    "ArgMaxMatcher.unmatched_threshold": Honoured(where=_MATCH),
    "ArgMaxMatcher.use_matmul_gather": Honoured(where="odkit.core.matchers (same result)"),
    "BatchNonMaxSuppression.change_coordinate_frame": Honoured(where=_NMS),
    "BatchNonMaxSuppression.iou_threshold": Honoured(where=_NMS),
    "BatchNonMaxSuppression.max_classes_per_detection": Values(allowed={1}, where=_NMS),
    "BatchNonMaxSuppression.max_detections_per_class": Honoured(where=_NMS),
    "BatchNonMaxSuppression.max_total_detections": Honoured(where=_NMS),
    "BatchNonMaxSuppression.score_threshold": Honoured(where=_NMS),
    "BatchNonMaxSuppression.soft_nms_sigma": Honoured(where=_NMS),
    "BatchNonMaxSuppression.use_class_agnostic_nms": Honoured(where=_NMS),
    "BatchNonMaxSuppression.use_combined_nms": Honoured(where=_SAME),
    "BatchNonMaxSuppression.use_cpu_nms": Honoured(where=_SAME),
    "BatchNonMaxSuppression.use_hard_nms": Honoured(where=_SAME),
    "BatchNonMaxSuppression.use_partitioned_nms": Honoured(where=_SAME),
    "BatchNonMaxSuppression.use_static_shapes": Honoured(where=_SAME),
    "BipartiteMatcher.use_matmul_gather": Honoured(where="odkit.core.matchers (same result)"),
    "BootstrappedSigmoidClassificationLoss.alpha": Honoured(where=_LOSS),
    "BootstrappedSigmoidClassificationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "BootstrappedSigmoidClassificationLoss.hard_bootstrap": Honoured(where=_LOSS),
    "BoxCoder.keypoint_box_coder": Refused(reason="keypoints are not implemented; use faster_rcnn_box_coder"),
    "ClassificationLoss.bootstrapped_sigmoid": Honoured(where=_LOSS),
    "ClassificationLoss.penalty_reduced_logistic_focal_loss": Honoured(where=_LOSS),
    "ClassificationLoss.weighted_dice_classification_loss": Refused(
        reason="CenterNet/mask loss; not implemented"
    ),
    "ClassificationLoss.weighted_logits_softmax": Refused(reason="distillation loss; not implemented"),
    "ClassificationLoss.weighted_sigmoid": Honoured(where=_LOSS),
    "ClassificationLoss.weighted_sigmoid_focal": Honoured(where=_LOSS),
    "ClassificationLoss.weighted_softmax": Honoured(where=_LOSS),
    "FasterRcnnBoxCoder.height_scale": Honoured(where=_CODERS),
    "FasterRcnnBoxCoder.width_scale": Honoured(where=_CODERS),
    "FasterRcnnBoxCoder.x_scale": Honoured(where=_CODERS),
    "FasterRcnnBoxCoder.y_scale": Honoured(where=_CODERS),
    "FlexibleGridAnchorGenerator.normalize_coordinates": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.aspect_ratios": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.height": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.height_offset": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.height_stride": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.scales": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.width": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.width_offset": Honoured(where=_ANCHORS),
    "GridAnchorGenerator.width_stride": Honoured(where=_ANCHORS),
    "HardExampleMiner.iou_threshold": Honoured(where="odkit.core.samplers"),
    "HardExampleMiner.loss_type": Honoured(where="odkit.core.samplers"),
    "HardExampleMiner.max_negatives_per_positive": Honoured(where="odkit.core.samplers"),
    "HardExampleMiner.min_negatives_per_image": Honoured(where="odkit.core.samplers"),
    "HardExampleMiner.num_hard_examples": Honoured(where="odkit.core.samplers"),
    "LocalizationLoss.l1_localization_loss": Honoured(where=_LOSS),
    "LocalizationLoss.weighted_giou": Honoured(where=_LOSS),
    "LocalizationLoss.weighted_iou": Honoured(where=_LOSS),
    "LocalizationLoss.weighted_l2": Honoured(where=_LOSS),
    "LocalizationLoss.weighted_smooth_l1": Honoured(where=_LOSS),
    "MeanStddevBoxCoder.stddev": Honoured(where=_CODERS),
    "MultiscaleAnchorGenerator.anchor_scale": Honoured(where=_ANCHORS),
    "MultiscaleAnchorGenerator.aspect_ratios": Honoured(where=_ANCHORS),
    "MultiscaleAnchorGenerator.max_level": Honoured(where=_ANCHORS),
    "MultiscaleAnchorGenerator.min_level": Honoured(where=_ANCHORS),
    "MultiscaleAnchorGenerator.normalize_coordinates": Honoured(where=_ANCHORS),
    "MultiscaleAnchorGenerator.scales_per_octave": Honoured(where=_ANCHORS),
    "PostProcessing.calibration_config": Refused(reason="score calibration is not implemented; remove it"),
    "PostProcessing.logit_scale": Honoured(where=_NMS),
    "PostProcessing.score_converter": Honoured(where=_NMS),
    "RandomExampleSampler.positive_sample_fraction": Honoured(where="odkit.core.samplers"),
    "RegionSimilarityCalculator.ioa_similarity": Honoured(where=_SIM),
    "RegionSimilarityCalculator.iou_similarity": Honoured(where=_SIM),
    "RegionSimilarityCalculator.neg_sq_dist_similarity": Honoured(where=_SIM),
    "RegionSimilarityCalculator.thresholded_iou_similarity": Honoured(where=_SIM),
    "SigmoidFocalClassificationLoss.alpha": Honoured(where=_LOSS),
    "SigmoidFocalClassificationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "SigmoidFocalClassificationLoss.gamma": Honoured(where=_LOSS),
    "SquareBoxCoder.length_scale": Honoured(where=_CODERS),
    "SquareBoxCoder.x_scale": Honoured(where=_CODERS),
    "SquareBoxCoder.y_scale": Honoured(where=_CODERS),
    "SsdAnchorGenerator.aspect_ratios": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.base_anchor_height": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.base_anchor_width": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.height_offset": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.height_stride": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.interpolated_scale_aspect_ratio": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.max_scale": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.min_scale": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.num_layers": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.reduce_boxes_in_lowest_layer": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.scales": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.width_offset": Honoured(where=_ANCHORS),
    "SsdAnchorGenerator.width_stride": Honoured(where=_ANCHORS),
    "ThresholdedIouSimilarity.iou_threshold": Honoured(where=_SIM),
    "WeightedL2LocalizationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "WeightedSigmoidClassificationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "WeightedSmoothL1LocalizationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "WeightedSmoothL1LocalizationLoss.delta": Honoured(where=_LOSS),
    "WeightedSoftmaxClassificationLoss.anchorwise_output": Honoured(where="deprecated in TF; no effect"),
    "WeightedSoftmaxClassificationLoss.logit_scale": Honoured(where=_LOSS),
}

RULES: dict[str, Rule] = {**_FASTER_RCNN, **_CORE}
