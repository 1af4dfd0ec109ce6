"""The eval loop: run a built model over an input loader and compute the metrics (+ side-by-side pictures).

    metrics, extras = evaluate_model(model, loader, config.eval_config, label_map)

Building the model, loading a checkpoint and the eval input, and writing model_dir/eval/ is the workflow's
job: odkit.workflows.evaluate.evaluate_checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from odkit.evaluation.metrics import DetectionMetrics, keypoint_metric_specs
from odkit.evaluation.settings import EvalSettings, eval_settings
from odkit.evaluation.visualize import side_by_side
from odkit.masks import reframe_box_masks_to_image_masks

log = logging.getLogger(__name__)


@dataclass
class EvalExtras:
    """What evaluate_model keeps besides the metric dict."""

    num_images: int = 0
    pictures: list[tuple[str, np.ndarray]] = field(default_factory=list)  # (image id, HxWx3 uint8 side by side)
    accumulator: DetectionMetrics | None = None
    losses: dict[str, float] = field(default_factory=dict)


def category_names(label_map: Any) -> dict[int, str]:
    """id -> display name from an odkit LabelMap or a plain {id: name} mapping."""
    if isinstance(label_map, Mapping):
        return {int(k): str(v) for k, v in label_map.items()}
    if hasattr(label_map, "id_to_display_name"):
        return dict(label_map.id_to_display_name)
    raise TypeError(f"unsupported label map type {type(label_map).__name__}")


def gt_to_original_frame(boxes: np.ndarray, padded_hw: tuple[int, int], true_hw: np.ndarray,
                         original_hw: np.ndarray) -> np.ndarray:
    """Groundtruth normalized to the padded model input -> absolute pixels of the original image
    (eval_util.result_dict_for_batched_example: realign to the true image, then scale_to_absolute)."""
    h_pad, w_pad = padded_hw
    th, tw = float(true_hw[0]), float(true_hw[1])
    oh, ow = float(original_hw[0]), float(original_hw[1])
    scale = np.array([h_pad / th * oh, w_pad / tw * ow, h_pad / th * oh, w_pad / tw * ow], dtype=np.float32)
    return (boxes.astype(np.float32) * scale).astype(np.float32)


def dets_to_original_frame(boxes: np.ndarray, original_hw: np.ndarray) -> np.ndarray:
    """Detections normalized to the true image -> absolute pixels of the original image."""
    oh, ow = float(original_hw[0]), float(original_hw[1])
    return (boxes.astype(np.float32) * np.array([oh, ow, oh, ow], dtype=np.float32)).astype(np.float32)


def _nearest_index(out_size: int, in_size: int) -> np.ndarray:
    """TF1 resize_nearest_neighbor(align_corners=True) source rows: round(i * (in - 1) / (out - 1))."""
    if out_size <= 1:
        return np.zeros(max(out_size, 0), np.int64)
    scale = np.float32((in_size - 1) / (out_size - 1))
    return np.minimum(np.floor(np.arange(out_size, dtype=np.float32) * scale + np.float32(0.5)), in_size - 1
                      ).astype(np.int64)


def gt_masks_to_original(masks: np.ndarray, true_hw: np.ndarray, original_hw: np.ndarray) -> np.ndarray:
    """Groundtruth masks [N, H, W] of the padded model input -> uint8 [N, oh, ow] of the original image
    (TF eval_util._resize_groundtruth_masks: crop the true region, nearest resize with align_corners)."""
    th, tw = int(true_hw[0]), int(true_hw[1])
    oh, ow = int(original_hw[0]), int(original_hw[1])
    m = masks[:, :th, :tw]
    return m[:, _nearest_index(oh, th)][:, :, _nearest_index(ow, tw)].astype(np.uint8)


def det_masks_to_original(box_masks: np.ndarray, boxes: np.ndarray, original_hw: np.ndarray) -> np.ndarray:
    """Per-box mask probabilities [D, mh, mw] + boxes normalized to the true image -> uint8 [D, oh, ow] 0/1
    (TF eval_util: reframe_box_masks_to_image_masks, then > 0.5)."""
    full = reframe_box_masks_to_image_masks(box_masks.astype(np.float32), boxes, int(original_hw[0]),
                                            int(original_hw[1]))
    return (full > 0.5).astype(np.uint8)


def _as_corners(points: np.ndarray) -> np.ndarray:
    """[..., 2] (y, x) -> [n, 4] (y, x, y, x) so the box frame conversions apply to points."""
    flat = points.reshape(-1, 2)
    return np.concatenate([flat, flat], axis=1)


def _side_by_side(image_hwc: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray, det_boxes: np.ndarray,
                  det_scores: np.ndarray, det_classes: np.ndarray, names: dict[int, str],
                  eval_config: EvalSettings, keypoints: dict[str, np.ndarray] | None = None) -> np.ndarray:
    return side_by_side(
        image_hwc, gt_boxes, gt_classes, det_boxes, det_scores, det_classes, names,
        min_score_threshold=eval_config.min_score_threshold,
        max_boxes=eval_config.max_num_boxes_to_visualize,
        skip_scores=eval_config.skip_scores,
        skip_labels=eval_config.skip_labels,
        groundtruth_on_detections=eval_config.visualize_groundtruth_boxes,
        groundtruth_color=eval_config.groundtruth_box_visualization_color,
        keypoints=keypoints,
        keypoint_edges=eval_config.keypoint_edges,
    )


def evaluate_model(
    model: torch.nn.Module,
    loader: Any,
    eval_config: Any,
    label_map: Any,
    *,
    device: str | torch.device | None = None,
    max_examples: int | None = None,
    compute_losses: bool = True,
) -> tuple[dict[str, float], EvalExtras]:
    """Run ``model`` over one pass of ``loader``; return (metrics, extras).

    Groundtruth and detections are compared in absolute pixels of the original image. Optional
    groundtruth keys ``is_crowd``, ``difficult``, ``group_of`` ([B, M] bool) are used when the loader
    provides them. Eval losses ("Loss/...", with regularization and total as the TF OD API reports them)
    are added when the model can compute them.
    """
    names = category_names(label_map)
    settings = eval_settings(eval_config)
    acc = DetectionMetrics(
        names,
        list(settings.metrics_set),
        include_metrics_per_category=settings.include_metrics_per_category,
        all_metrics_per_category=settings.all_metrics_per_category,
        recall_lower_bound=settings.recall_lower_bound,
        recall_upper_bound=settings.recall_upper_bound,
        skip_predictions_for_unlabeled_class=settings.skip_predictions_for_unlabeled_class,
        keypoint_metrics=keypoint_metric_specs(settings, label_map),
    )
    num_vis = settings.num_visualizations
    extras = EvalExtras(accumulator=acc)
    dev = torch.device(device) if device is not None else next(iter(model.parameters()), torch.empty(0)).device
    model.eval()
    limit = max_examples
    try:
        limit = min(limit or len(loader.dataset), len(loader.dataset)) if hasattr(loader, "dataset") else limit
    except TypeError:
        pass
    loss_sums: dict[str, float] = {}
    loss_batches = 0
    with torch.no_grad():
        for batch in loader:
            images = batch["images"].to(dev).contiguous()  # the loader batches channels-last; eval runs NCHW
            tis = batch["true_image_shapes"].to(dev)
            gt = {k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch["groundtruth"].items()}
            pred = model.predict(model.preprocess(images))
            dets = model.postprocess(pred, tis)
            if compute_losses:
                try:
                    losses = model.loss(pred, gt, tis)
                except Exception as exc:  # a model that cannot score its eval losses still gets metrics
                    log.warning("eval losses skipped: %s: %s", type(exc).__name__, exc)
                    compute_losses = False
                else:
                    losses = {k: float(v) for k, v in losses.items()}
                    if hasattr(model, "regularization_loss"):
                        losses["Loss/regularization_loss"] = float(model.regularization_loss())
                    losses["Loss/total_loss"] = sum(losses.values())
                    for k, v in losses.items():
                        loss_sums[k] = loss_sums.get(k, 0.0) + v
                    loss_batches += 1
            _add_batch(acc, extras, batch, gt, dets, images, names, settings, num_vis, limit)
            if limit is not None and extras.num_images >= limit:
                break
    if loss_batches:
        extras.losses = {k: v / loss_batches for k, v in loss_sums.items()}
    metrics = acc.compute()
    metrics.update(extras.losses)
    return metrics, extras


def _add_batch(acc: DetectionMetrics, extras: EvalExtras, batch: dict[str, Any], gt: dict[str, Any],
               dets: dict[str, torch.Tensor], images: torch.Tensor, names: dict[int, str], eval_config: EvalSettings,
               num_vis: int, limit: int | None) -> None:
    d_boxes = dets["detection_boxes"].float().cpu().numpy()
    d_scores = dets["detection_scores"].float().cpu().numpy()
    d_classes = dets["detection_classes"].cpu().numpy()
    d_num = dets["num_detections"].cpu().numpy()
    g_boxes = gt["boxes"].float().cpu().numpy()
    g_classes = gt["classes"].cpu().numpy()
    g_num = gt["num_boxes"].cpu().numpy()
    optional = {k: gt[k].cpu().numpy().astype(bool) for k in ("is_crowd", "difficult", "group_of") if k in gt}
    g_area = gt["area"].float().cpu().numpy() if "area" in gt else None
    g_kp = gt["keypoints"].float().cpu().numpy() if "keypoints" in gt else None
    g_kv = gt["keypoint_visibilities"].cpu().numpy() if "keypoints" in gt else None
    d_kp = dets["detection_keypoints"].float().cpu().numpy() if "detection_keypoints" in dets else None
    want_masks = "coco_mask_metrics" in acc.metrics_set
    g_masks = gt["masks"].cpu().numpy() if want_masks and "masks" in gt else None
    d_masks = dets["detection_masks"].float().cpu().numpy() if want_masks and "detection_masks" in dets else None
    tis = batch["true_image_shapes"].cpu().numpy()
    orig = batch["original_sizes"].cpu().numpy()
    padded = (int(images.shape[-2]), int(images.shape[-1]))
    for i in range(images.shape[0]):
        if limit is not None and extras.num_images >= limit:
            return
        ng = int(g_num[i])
        valid = g_classes[i, :ng] > 0
        gb = gt_to_original_frame(g_boxes[i, :ng][valid], padded, tis[i], orig[i])
        gc = g_classes[i, :ng][valid]
        nd = int(d_num[i])
        db = dets_to_original_frame(d_boxes[i, :nd], orig[i])
        ds = d_scores[i, :nd]
        dc = np.rint(d_classes[i, :nd]).astype(np.int64)
        sid = str(batch["source_ids"][i]) if batch.get("source_ids") else ""
        kp: dict[str, np.ndarray] = {}
        if g_kp is not None and g_kv is not None:  # keypoints (y, x) scale like the boxes' (ymin, xmin)
            kpt = g_kp[i, :ng][valid]
            kp["gt_keypoints"] = gt_to_original_frame(_as_corners(kpt), padded, tis[i], orig[i])[:, :2] \
                .reshape(kpt.shape)
            kp["gt_keypoint_visibilities"] = g_kv[i, :ng][valid]
        if d_kp is not None:
            dk = d_kp[i, :nd]
            kp["det_keypoints"] = dets_to_original_frame(_as_corners(dk), orig[i])[:, :2].reshape(dk.shape)
        if g_masks is not None and d_masks is not None:
            kp["gt_masks"] = gt_masks_to_original(g_masks[i, :ng][valid], tis[i], orig[i])
            kp["det_masks"] = det_masks_to_original(d_masks[i, :nd], d_boxes[i, :nd], orig[i])
        acc.add_image(
            sid, gb, gc, db, ds, dc,
            gt_is_crowd=optional["is_crowd"][i, :ng][valid] if "is_crowd" in optional else None,
            gt_difficult=optional["difficult"][i, :ng][valid] if "difficult" in optional else None,
            gt_group_of=optional["group_of"][i, :ng][valid] if "group_of" in optional else None,
            gt_area=g_area[i, :ng][valid] if g_area is not None else None,
            **kp,
        )
        extras.num_images += 1
        if len(extras.pictures) < num_vis:
            if "original_images" in batch:
                img = batch["original_images"][i].cpu().numpy().transpose(1, 2, 0)
            else:  # the valid region of the model input, stretched back to the original size by the boxes
                th, tw = int(tis[i][0]), int(tis[i][1])
                img = images[i, :, :th, :tw].cpu().numpy().transpose(1, 2, 0)
            norm_g = gb / np.array([orig[i][0], orig[i][1]] * 2, dtype=np.float32)
            norm_d = db / np.array([orig[i][0], orig[i][1]] * 2, dtype=np.float32)
            hw = np.array([orig[i][0], orig[i][1]], dtype=np.float32)
            kp_pic: dict[str, np.ndarray] = {}
            if "gt_keypoints" in kp:
                kp_pic.update(gt=kp["gt_keypoints"] / hw, gt_visible=kp["gt_keypoint_visibilities"])
            if "det_keypoints" in kp:
                kp_pic["det"] = kp["det_keypoints"] / hw
                if "detection_keypoint_scores" in dets:
                    kp_pic["det_scores"] = dets["detection_keypoint_scores"][i, :nd].float().cpu().numpy()
            pic = _side_by_side(np.ascontiguousarray(img.astype(np.uint8)), norm_g, gc, norm_d, ds, dc, names,
                                eval_config, kp_pic or None)
            extras.pictures.append((sid or f"image_{extras.num_images}", pic))
