"""``eval_config`` -> :class:`EvalSettings`: the one place the evaluation code reads the eval config.

The evaluator, its outputs, the visualisations and ``odkit eval`` take their values from here, and
``odkit config check`` calls :func:`eval_settings` on a read-tracking view of the config: what this
function reads is what odkit honours, and what it refuses is refused by name (odkit.config.tracking).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from odkit.config.tracking import field_path, refuse
from odkit.evaluation.metrics import KeypointMetricRequest, check_metrics_set, keypoint_metric_requests

# EvalConfig booleans whose `true` asks for something odkit's evaluator does not do.
_REFUSED_TRUE = {
    "ignore_groundtruth": "evaluation always compares with the groundtruth",
    "retain_original_image_additional_channels": "additional image channels are not supported",
    "save_graph": "there is no TF graph to save",
    "use_dummy_loss_in_eval": "eval losses are the model's real losses",
}


@dataclass(frozen=True)
class EvalSettings:
    metrics_set: tuple[str, ...] = ("coco_detection_metrics",)
    include_metrics_per_category: bool = False
    all_metrics_per_category: bool = False
    recall_lower_bound: float = 0.0
    recall_upper_bound: float = 1.0
    skip_predictions_for_unlabeled_class: bool = False
    batch_size: int = 1
    num_examples: int = 0  # 0: every example of the eval input
    num_visualizations: int = 10
    retain_original_images: bool = True
    use_moving_averages: bool = False
    eval_interval_secs: float = 300.0
    max_evals: int = 0
    # visualisation (odkit.evaluation.visualize)
    min_score_threshold: float = 0.5
    max_num_boxes_to_visualize: int = 20
    skip_scores: bool = False
    skip_labels: bool = False
    visualize_groundtruth_boxes: bool = False
    groundtruth_box_visualization_color: str = "black"
    # outputs (odkit.evaluation.outputs)
    visualization_export_dir: str = ""
    keep_image_id_for_visualization_export: bool = False
    export_path: str = ""
    # parameterized_metric coco_keypoint_metrics (odkit.evaluation.metrics.keypoint_metric_specs)
    keypoint_metrics: tuple[KeypointMetricRequest, ...] = ()
    # keypoint_edge (start, end): drawn by odkit predict on keypoint exports (odkit.workflows.export)
    keypoint_edges: tuple[tuple[int, int], ...] = ()


def eval_settings(eval_config: Any) -> EvalSettings:
    """Read an ``EvalConfig`` message (or a tracked view of one; None -> defaults)."""
    if eval_config is None:
        return EvalSettings()
    if isinstance(eval_config, EvalSettings):
        return eval_config
    if not hasattr(eval_config, "DESCRIPTOR"):  # a namespace with some of the fields (tests, scripts)
        given = {f.name: getattr(eval_config, f.name) for f in fields(EvalSettings) if hasattr(eval_config, f.name)}
        if "metrics_set" in given:
            given["metrics_set"] = tuple(check_metrics_set(list(given["metrics_set"])))
        return EvalSettings(**given)
    ec = eval_config
    for name, why in _REFUSED_TRUE.items():
        if getattr(ec, name):
            refuse(ec, name, f"{name}: true is not supported ({why})", hint="remove it")
    metrics = check_metrics_set(list(ec.metrics_set), where=field_path(ec, "metrics_set",
                                                                       "eval_config.metrics_set"))
    return EvalSettings(
        metrics_set=tuple(metrics),
        include_metrics_per_category=bool(ec.include_metrics_per_category),
        all_metrics_per_category=bool(ec.all_metrics_per_category),
        recall_lower_bound=float(ec.recall_lower_bound),
        recall_upper_bound=float(ec.recall_upper_bound),
        skip_predictions_for_unlabeled_class=bool(ec.skip_predictions_for_unlabeled_class),
        batch_size=max(1, int(ec.batch_size)),
        num_examples=int(ec.num_examples) if ec.HasField("num_examples") else 0,
        num_visualizations=int(ec.num_visualizations),
        retain_original_images=bool(ec.retain_original_images),
        use_moving_averages=bool(ec.use_moving_averages),
        eval_interval_secs=float(ec.eval_interval_secs),
        max_evals=int(ec.max_evals),
        min_score_threshold=float(ec.min_score_threshold),
        max_num_boxes_to_visualize=int(ec.max_num_boxes_to_visualize),
        skip_scores=bool(ec.skip_scores),
        skip_labels=bool(ec.skip_labels),
        visualize_groundtruth_boxes=bool(ec.visualize_groundtruth_boxes),
        groundtruth_box_visualization_color=str(ec.groundtruth_box_visualization_color),
        visualization_export_dir=str(ec.visualization_export_dir),
        keep_image_id_for_visualization_export=bool(ec.keep_image_id_for_visualization_export),
        export_path=str(ec.export_path),
        keypoint_metrics=keypoint_metric_requests(ec),
        keypoint_edges=tuple((int(e.start), int(e.end)) for e in ec.keypoint_edge),
    )
