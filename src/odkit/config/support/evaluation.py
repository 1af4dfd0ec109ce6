"""Config support rules for the evaluation area (EvalConfig).

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

_EV = "odkit.evaluation.evaluator"
_OUT = "odkit.evaluation.outputs"
_VIS = "odkit.evaluation.visualize"
_MET = "odkit.evaluation.metrics"

RULES: dict[str, Rule] = {
    "EvalConfig.all_metrics_per_category": Honoured(where="odkit.evaluation.coco"),
    "EvalConfig.batch_size": Honoured(where=_EV),
    "EvalConfig.eval_instance_masks": Honoured(
        where=_EV + " (masks are evaluated when metrics_set has coco_mask_metrics; they need masks)"
    ),
    "EvalConfig.eval_interval_secs": Honoured(where="odkit.cli.eval_cmd"),
    "EvalConfig.eval_master": Refused(reason="TF1 distributed-eval address; odkit evaluates in-process"),
    "EvalConfig.export_path": Honoured(where=_OUT),
    "EvalConfig.force_no_resize": Refused(reason="odkit always resizes with the model's image_resizer"),
    "EvalConfig.groundtruth_box_visualization_color": Honoured(where=_VIS),
    "EvalConfig.ignore_groundtruth": Values(allowed={False}, where=_EV),
    "EvalConfig.include_metrics_per_category": Honoured(where="odkit.evaluation.coco"),
    "EvalConfig.keep_image_id_for_visualization_export": Honoured(where=_OUT),
    "EvalConfig.keypoint_edge": Honoured(where="odkit.evaluation.visualize"),  # eval pictures, predict drawing
    "EvalConfig.max_evals": Honoured(where="odkit.evaluation.continuous"),
    "EvalConfig.max_num_boxes_to_visualize": Honoured(where=_VIS),
    "EvalConfig.metrics_set": Values(
        allowed={
            "coco_detection_metrics",
            "coco_mask_metrics",
            "pascal_voc_detection_metrics",
            "weighted_pascal_voc_detection_metrics",
        },
        where=_MET,
    ),
    "EvalConfig.min_score_threshold": Honoured(where=_VIS),
    "EvalConfig.num_examples": Honoured(where=_EV),
    "EvalConfig.num_visualizations": Honoured(where=_EV),
    "EvalConfig.parameterized_metric": Honoured(where="odkit.evaluation.metrics"),  # coco_keypoint_metrics
    "EvalConfig.recall_lower_bound": Honoured(where="odkit.evaluation.pascal"),
    "EvalConfig.recall_upper_bound": Honoured(where="odkit.evaluation.pascal"),
    "EvalConfig.retain_original_image_additional_channels": Values(allowed={False}, where=_EV),
    "EvalConfig.retain_original_images": Honoured(where=_EV),
    "EvalConfig.save_graph": Values(allowed={False}, where=_EV),
    "EvalConfig.skip_labels": Honoured(where=_VIS),
    "EvalConfig.skip_predictions_for_unlabeled_class": Honoured(where=_MET),
    "EvalConfig.skip_scores": Honoured(where=_VIS),
    "EvalConfig.use_dummy_loss_in_eval": Values(allowed={False}, where=_EV),
    "EvalConfig.use_moving_averages": Honoured(where=_EV),
    "EvalConfig.visualization_export_dir": Honoured(where=_OUT),
    "EvalConfig.visualize_groundtruth_boxes": Honoured(where=_VIS),
}
