"""`CenterNet.keypoint_estimation_task` + `keypoint_label_map_path` -> KeypointEstimationTask list
(TF OD API model_builder.keypoint_proto_to_params).

The keypoint label map (``item { name id keypoints { id label } }``) is read with odkit's label map reader;
``keypoint_class_name`` names an item by its ``name`` (TF: ``/m/01g317`` for person); the task's class is that
item's id, its keypoints the item's ``keypoints`` ids in file order, ``keypoint_label_to_std`` their heatmap
standard deviations by label (1.0 where unset). Refused by name: ``predict_depth`` / ``per_keypoint_depth``,
``rescore_instances``, ``argmax_postprocessing`` (not implemented), two tasks on one class (TF refuses too).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from odkit.errors import ConfigError, UnsupportedError

WHERE = "model.center_net.keypoint_estimation_task"
NOT_IMPLEMENTED = {
    "predict_depth": "keypoint depth prediction is not implemented",
    "per_keypoint_depth": "keypoint depth prediction is not implemented",
    "rescore_instances": "rescoring instances by keypoint scores is not implemented",
    "argmax_postprocessing": "argmax keypoint postprocessing (single-instance) is not implemented",
}


HeadParser = Callable[[Any, str], tuple[tuple[int, ...], tuple[int, ...]]]


def _dry_build() -> bool:
    """True inside odkit.workflows.config_check's dry build (modules made on torch's meta device)."""
    import torch

    return torch.empty(0).device.type == "meta"


def build_keypoint_tasks(cn: Any, head_params: HeadParser) -> list[Any]:
    """The keypoint tasks of a CenterNet proto (empty without keypoint_estimation_task); ``head_params``
    (the CenterNet builder's) reads a PredictionHeadParams message (None: TF's default head)."""

    def _head(task: Any, name: str, where: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return head_params(getattr(task, name) if task.HasField(name) else None, f"{where}.{name}")

    from odkit.builders.losses_builder import build_classification_loss, build_localization_loss
    from odkit.data.label_map import load_label_map
    from odkit.models.center_net_keypoints import RANKING_MODES, KeypointEstimationTask

    tasks_cfg = list(cn.keypoint_estimation_task)
    if not tasks_cfg:
        if cn.keypoint_label_map_path:  # TF reads it only for keypoint tasks
            raise UnsupportedError("keypoint_label_map_path has no effect without keypoint_estimation_task",
                                   where="model.center_net.keypoint_label_map_path",
                                   hint="add a keypoint_estimation_task or remove the path")
        return []
    if not cn.keypoint_label_map_path:
        raise ConfigError("keypoint_estimation_task needs keypoint_label_map_path (the label map listing the "
                          "class's keypoints { id label })", where="model.center_net.keypoint_label_map_path")
    try:
        lm = load_label_map(cn.keypoint_label_map_path)
    except ConfigError:
        if not _dry_build():
            raise
        # `odkit config check` builds on the meta device without opening data files: a stand-in label map
        # (each task's class, its keypoint_label_to_std labels) so every field is still read
        by_name = {t.keypoint_class_name: (i + 1, tuple(enumerate(sorted(t.keypoint_label_to_std) or ["keypoint"])))
                   for i, t in enumerate(tasks_cfg)}
    else:
        by_name = {n: (i, kp) for i, n, kp in zip(lm.ids, lm.names, lm.keypoints or ((),) * len(lm.ids)) if kp}
    single = len(tasks_cfg) == 1 and int(cn.num_classes) == 1
    total = 0
    specs = []
    seen: set[int] = set()
    for t, task in enumerate(tasks_cfg):
        where = f"{WHERE}[{t}]"
        for name, reason in NOT_IMPLEMENTED.items():
            if getattr(task, name):
                raise UnsupportedError(f"{name}: {reason}", where=f"{where}.{name}", hint="remove it")
        if task.keypoint_class_name not in by_name:
            raise ConfigError(f"keypoint_class_name {task.keypoint_class_name!r} is not an item name with keypoints "
                              f"in {cn.keypoint_label_map_path}", where=f"{where}.keypoint_class_name",
                              hint="use the label map item's name (e.g. \"/m/01g317\" for person)")
        class_id, kps = by_name[task.keypoint_class_name]
        if class_id - 1 in seen:
            raise ConfigError(f"two keypoint tasks map to class id {class_id}", where=where)
        seen.add(class_id - 1)
        if class_id > cn.num_classes:
            raise ConfigError(f"keypoint class id {class_id} is larger than num_classes {cn.num_classes}",
                              where=f"{where}.keypoint_class_name")
        labels = [label for _, label in kps]
        unknown = sorted(set(task.keypoint_label_to_std) - set(labels))
        if unknown:
            raise ConfigError(f"keypoint_label_to_std names {unknown[:3]}, not keypoints of "
                              f"{task.keypoint_class_name!r}", where=f"{where}.keypoint_label_to_std")
        if task.candidate_ranking_mode not in RANKING_MODES:
            raise UnsupportedError(f"candidate_ranking_mode {task.candidate_ranking_mode!r} is not supported",
                                   where=f"{where}.candidate_ranking_mode", hint=f"use one of {', '.join(RANKING_MODES)}")
        if task.num_candidates_per_keypoint <= 0 or task.peak_max_pool_kernel_size <= 0:
            raise ConfigError("num_candidates_per_keypoint and peak_max_pool_kernel_size must be > 0", where=where)
        if task.offset_peak_radius < 0:
            raise ConfigError("offset_peak_radius must be >= 0", where=f"{where}.offset_peak_radius")
        loss = task.loss
        cls_kind = loss.classification_loss.WhichOneof("classification_loss")
        loc_kind = loss.localization_loss.WhichOneof("localization_loss")
        if cls_kind is None or loc_kind is None:
            raise ConfigError("keypoint task loss needs classification_loss and localization_loss",
                              where=f"{where}.loss",
                              hint="penalty_reduced_logistic_focal_loss and l1_localization_loss, as the zoo")
        specs.append(dict(
            task_name=task.task_name, class_id=class_id - 1, keypoint_indices=[i for i, _ in kps],
            classification_loss=build_classification_loss(loss.classification_loss, f"{where}.loss.classification_loss"),
            localization_loss=build_localization_loss(loss.localization_loss, f"{where}.loss.localization_loss"),
            keypoint_std_dev=[float(task.keypoint_label_to_std.get(label, 1.0)) for label in labels],
            task_loss_weight=task.task_loss_weight,
            keypoint_regression_loss_weight=task.keypoint_regression_loss_weight,
            keypoint_heatmap_loss_weight=task.keypoint_heatmap_loss_weight,
            keypoint_offset_loss_weight=task.keypoint_offset_loss_weight,
            heatmap_bias_init=task.heatmap_bias_init,
            keypoint_candidate_score_threshold=task.keypoint_candidate_score_threshold,
            num_candidates_per_keypoint=task.num_candidates_per_keypoint,
            peak_max_pool_kernel_size=task.peak_max_pool_kernel_size,
            unmatched_keypoint_score=task.unmatched_keypoint_score, box_scale=task.box_scale,
            candidate_search_scale=task.candidate_search_scale, candidate_ranking_mode=task.candidate_ranking_mode,
            score_distance_offset=task.score_distance_offset, score_distance_multiplier=task.score_distance_multiplier,
            std_dev_multiplier=task.std_dev_multiplier, offset_peak_radius=task.offset_peak_radius,
            per_keypoint_offset=task.per_keypoint_offset, clip_out_of_frame_keypoints=task.clip_out_of_frame_keypoints,
            single_class_path=single,
            heatmap_head=_head(task, "heatmap_head_params", where),
            offset_head=_head(task, "offset_head_params", where),
            regress_head=_head(task, "regress_head_params", where)))
        total += len(kps)
    out = []
    for spec in specs:
        if single:  # TF's single-class path: the K keypoints in label-map order
            spec.update(output_indices=list(range(len(spec["keypoint_indices"]))),
                        num_total_keypoints=len(spec["keypoint_indices"]))
        else:  # TF's multi-class path scatters to the keypoint ids in sum(K) slots
            if max(spec["keypoint_indices"]) >= total:
                raise ConfigError(f"keypoint ids of {spec['task_name']!r} go up to {max(spec['keypoint_indices'])}, "
                                  f"beyond the {total} keypoints of all tasks", where=WHERE)
            spec.update(num_total_keypoints=total)
        out.append(KeypointEstimationTask(**spec))
    return out
