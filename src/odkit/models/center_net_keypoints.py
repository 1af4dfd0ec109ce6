"""CenterNet keypoint estimation task (TF OD API `KeypointEstimationParams` in center_net_meta_arch.py).

A `CenterNetTask` (odkit.models.center_net) for one keypoint class ("human_pose" on the person class):

heads (prediction keys ``<task_name>/keypoint/{heatmap,offset,regression}``, channels first):
  heatmap [N_out, B, K, h, w] (logits, bias ``heatmap_bias_init``), offset [N_out, B, 2 or 2K, h, w]
  (``per_keypoint_offset``: one (y, x) pair per keypoint), regression [N_out, B, 2K, h, w] (keypoint - centre);
losses (TF normalisations, times ``task_loss_weight`` and each loss weight):
  heatmap: the task's classification loss over pixels x valid pixels x blackout mask, / (N_out * number of
  labelled keypoints, >= 1); offset: localization loss at the cells within ``offset_peak_radius`` of each
  keypoint, / (N_out * sum of weights, >= 1); regression: the same at the cells around each box centre;
postprocess (TF `_postprocess_keypoints_*`): per keypoint type the top ``num_candidates_per_keypoint`` heatmap
  peaks (max-pool ``peak_max_pool_kernel_size``) refined by their offsets are the candidates; each detection's
  regressed keypoints (centre + regression) snap to a candidate chosen by ``candidate_ranking_mode``
  (min_distance, score_distance_ratio with ``score_distance_offset``, score_scaled_distance_ratio with
  ``score_distance_multiplier``, gaussian_weighted with ``keypoint_std_dev`` x ``std_dev_multiplier``); a
  candidate outside the box scaled by ``box_scale``, under ``keypoint_candidate_score_threshold`` or farther
  than ``candidate_search_scale`` x box size keeps the regressed keypoint with ``unmatched_keypoint_score``.
  Keypoints go out normalized to the true image (``clip_out_of_frame_keypoints`` clips them and zeroes the
  scores outside), scattered to the label map's keypoint ids; detections of other classes (and padding) get
  zeros unless the model has one class and one keypoint task (TF's single-class path computes them all).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from odkit.core import center_net_keypoint_targets as kpt
from odkit.core.center_net_targets import gather_at, gaussian_sigma
from odkit.core.heatmap_peaks import top_k_peaks
from odkit.errors import DataError
from odkit.models.center_net import CenterNetTask, HeadSpec, LossContext, Peaks

KEYPOINT_HEATMAP = "keypoint/heatmap"
KEYPOINT_OFFSET = "keypoint/offset"
KEYPOINT_REGRESSION = "keypoint/regression"
RANKING_MODES = ("min_distance", "score_distance_ratio", "score_scaled_distance_ratio", "gaussian_weighted")


class KeypointEstimationTask(CenterNetTask):
    """One keypoint class (see the module docstring). ``class_id`` is 0-based; ``keypoint_indices`` are the
    label map's keypoint ids (columns of the groundtruth keypoints and of the output)."""

    name = "keypoint_estimation"

    def __init__(self, *, task_name: str, class_id: int, keypoint_indices: Sequence[int],
                 classification_loss, localization_loss, keypoint_std_dev: Sequence[float] | None = None,
                 task_loss_weight: float = 1.0, keypoint_regression_loss_weight: float = 1.0,
                 keypoint_heatmap_loss_weight: float = 1.0, keypoint_offset_loss_weight: float = 1.0,
                 heatmap_bias_init: float = -2.19, keypoint_candidate_score_threshold: float = 0.1,
                 num_candidates_per_keypoint: int = 100, peak_max_pool_kernel_size: int = 3,
                 unmatched_keypoint_score: float = 0.1, box_scale: float = 1.2,
                 candidate_search_scale: float = 0.3, candidate_ranking_mode: str = "min_distance",
                 score_distance_offset: float = 1.0, score_distance_multiplier: float = 0.1,
                 std_dev_multiplier: float = 1.0, offset_peak_radius: int = 0, per_keypoint_offset: bool = False,
                 clip_out_of_frame_keypoints: bool = False, num_total_keypoints: int | None = None,
                 single_class_path: bool = False, output_indices: Sequence[int] | None = None,
                 heatmap_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,)),
                 offset_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,)),
                 regress_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,))) -> None:
        super().__init__()
        if candidate_ranking_mode not in RANKING_MODES:
            raise ValueError(f"candidate_ranking_mode {candidate_ranking_mode!r}")
        self.task_name = task_name
        self.class_id = int(class_id)
        self.keypoint_indices = tuple(int(i) for i in keypoint_indices)
        k = len(self.keypoint_indices)
        self.num_keypoints = k
        self.classification_loss = classification_loss
        self.localization_loss = localization_loss
        std = list(keypoint_std_dev) if keypoint_std_dev is not None else [1.0] * k
        self.register_buffer("keypoint_std_dev", torch.tensor(std, dtype=torch.float32), persistent=False)
        self.task_loss_weight = float(task_loss_weight)
        self.regression_weight = float(keypoint_regression_loss_weight)
        self.heatmap_weight = float(keypoint_heatmap_loss_weight)
        self.offset_weight = float(keypoint_offset_loss_weight)
        self.score_threshold = float(keypoint_candidate_score_threshold)
        self.num_candidates = int(num_candidates_per_keypoint)
        self.peak_kernel = int(peak_max_pool_kernel_size)
        self.unmatched_score = float(unmatched_keypoint_score)
        self.box_scale = float(box_scale)
        self.search_scale = float(candidate_search_scale)
        self.ranking_mode = candidate_ranking_mode
        self.score_distance_offset = float(score_distance_offset)
        self.score_distance_multiplier = float(score_distance_multiplier)
        self.std_dev_multiplier = float(std_dev_multiplier)
        self.offset_peak_radius = int(offset_peak_radius)
        self.per_keypoint_offset = bool(per_keypoint_offset)
        self.clip_out_of_frame = bool(clip_out_of_frame_keypoints)
        # where each keypoint goes in detection_keypoints: the label-map ids (TF's multi-class path), or
        # 0..K-1 in label-map order for one class and one task (TF's single-class path)
        self.output_indices = tuple(int(i) for i in (output_indices if output_indices is not None
                                                     else self.keypoint_indices))
        self.num_total_keypoints = int(num_total_keypoints or max(self.output_indices) + 1)
        self.single_class_path = bool(single_class_path)
        self.keys = {n: f"{task_name}/{n}" for n in (KEYPOINT_HEATMAP, KEYPOINT_OFFSET, KEYPOINT_REGRESSION)}
        self._specs = {
            self.keys[KEYPOINT_HEATMAP]: HeadSpec(k, tuple(heatmap_head[0]), tuple(heatmap_head[1]),
                                                  float(heatmap_bias_init)),
            self.keys[KEYPOINT_OFFSET]: HeadSpec(2 * k if self.per_keypoint_offset else 2, tuple(offset_head[0]),
                                                 tuple(offset_head[1])),
            self.keys[KEYPOINT_REGRESSION]: HeadSpec(2 * k, tuple(regress_head[0]), tuple(regress_head[1])),
        }

    def head_specs(self) -> dict[str, HeadSpec]:
        return dict(self._specs)

    # ------------------------------------------------------------------ training
    def loss(self, predictions: dict[str, Tensor], context: LossContext) -> dict[str, Tensor]:
        gt = context.groundtruth
        if "keypoints" not in gt or "keypoint_visibilities" not in gt:
            raise DataError(f"the CenterNet keypoint task {self.task_name!r} needs groundtruth keypoints",
                            hint="set the input reader's num_keypoints (the records' keypoint count)")
        if gt["keypoints"].shape[2] <= max(self.keypoint_indices):
            raise DataError(f"groundtruth has {gt['keypoints'].shape[2]} keypoints per object; the keypoint label "
                            f"map names ids up to {max(self.keypoint_indices)}",
                            hint="set the input reader's num_keypoints to the records' keypoint count")
        h, w = context.out_height, context.out_width
        # groundtruth is padded at the end (collate): work on the batch's largest box count only (one host
        # sync; the dense heatmap holds boxes x keypoints maps, so padding would dominate its cost)
        m = max(int(gt["num_boxes"].max()), 1) if "num_boxes" in gt else gt["boxes"].shape[1]
        kp, kp_w = kpt.select_task_keypoints(gt["keypoints"][:, :m], gt["keypoint_visibilities"][:, :m],
                                             gt["classes"][:, :m], gt["weights"][:, :m], self.class_id,
                                             self.keypoint_indices, h, w)
        boxes = gt["boxes"][:, :m]
        w_task = self.task_loss_weight
        return {
            self.keys[KEYPOINT_HEATMAP]: w_task * self.heatmap_weight * self._heatmap_loss(
                predictions[self.keys[KEYPOINT_HEATMAP]].float(), kp, kp_w, boxes, context),
            self.keys[KEYPOINT_OFFSET]: w_task * self.offset_weight * self._offset_loss(
                predictions[self.keys[KEYPOINT_OFFSET]].float(), kp, kp_w, h, w),
            self.keys[KEYPOINT_REGRESSION]: w_task * self.regression_weight * self._regression_loss(
                predictions[self.keys[KEYPOINT_REGRESSION]].float(), kp, kp_w, boxes, h, w),
        }

    def _heatmap_loss(self, preds: Tensor, kp: Tensor, kp_w: Tensor, boxes: Tensor, context: LossContext) -> Tensor:
        h, w = context.out_height, context.out_width
        heatmap, num_instances, valid = kpt.keypoint_heatmap_targets(kp, kp_w, boxes, h, w, self.keypoint_std_dev)
        target = heatmap.flatten(2).transpose(1, 2)  # [B, h*w, K]
        mask = valid.flatten(2).transpose(1, 2) * context.valid_pixels
        total = preds.new_zeros(())
        for pred in preds:
            flat = pred.flatten(2).transpose(1, 2)
            total = total + (self.classification_loss(flat, target, torch.ones_like(context.valid_pixels))
                             * mask).sum()
        return total / (preds.shape[0] * num_instances.sum().float().clamp(min=1.0))

    def _point_loss(self, preds: Tensor, y: Tensor, x: Tensor, channel: Tensor | None, targets: Tensor,
                    weights: Tensor) -> Tensor:
        """Localization loss of [N_out, B, C, h, w] predictions at cells [B, P] against [B, P, 2] targets."""
        total = preds.new_zeros(())
        for pred in preds:
            values = kpt.gather_channels_at(pred, y, x, channel)
            per_point = self.localization_loss(values, targets, torch.ones_like(weights))  # summed over (y, x)
            total = total + (weights * per_point).sum()
        return total / (preds.shape[0] * weights.sum().clamp(min=1.0))

    def _offset_loss(self, preds: Tensor, kp: Tensor, kp_w: Tensor, h: int, w: int) -> Tensor:
        b, m, k, _ = kp.shape
        yi, xi, valid, off = kpt.neighbour_offsets(kp[..., 0], kp[..., 1], kp[..., 0], kp[..., 1], h, w,
                                                   self.offset_peak_radius)  # [B, M, K, N]
        n = yi.shape[-1]
        channel = torch.arange(k, device=kp.device)[None, None, :, None].expand(b, m, k, n)
        weights = valid.float() * kp_w[..., None]
        return self._point_loss(preds, yi.reshape(b, -1), xi.reshape(b, -1),
                                channel.reshape(b, -1) if self.per_keypoint_offset else None,
                                off.reshape(b, -1, 2), weights.reshape(b, -1))

    def _regression_loss(self, preds: Tensor, kp: Tensor, kp_w: Tensor, boxes: Tensor, h: int, w: int) -> Tensor:
        b, m, k, _ = kp.shape
        yc, xc, _, _ = kpt.box_centers_sizes(boxes, h, w)
        yc, xc = yc[..., None].expand(b, m, k), xc[..., None].expand(b, m, k)
        yi, xi, valid, off = kpt.neighbour_offsets(yc, xc, kp[..., 0], kp[..., 1], h, w, self.offset_peak_radius)
        n = yi.shape[-1]
        channel = torch.arange(k, device=kp.device)[None, None, :, None].expand(b, m, k, n)
        weights = valid.float() * kp_w[..., None]
        return self._point_loss(preds, yi.reshape(b, -1), xi.reshape(b, -1), channel.reshape(b, -1),
                                off.reshape(b, -1, 2), weights.reshape(b, -1))

    # ------------------------------------------------------------------ inference
    def postprocess(self, predictions: dict[str, Tensor], peaks: Peaks, true_image_shapes: Tensor,
                    detections: dict[str, Tensor]) -> None:
        heatmap = torch.sigmoid(predictions[self.keys[KEYPOINT_HEATMAP]][-1].float())  # [B, K, h, w]
        offsets = predictions[self.keys[KEYPOINT_OFFSET]][-1].float()
        regression = predictions[self.keys[KEYPOINT_REGRESSION]][-1].float()
        b, k, h, w = heatmap.shape
        d = peaks.y.shape[1]
        # regressed keypoints at the object centres [B, D, K, 2]
        reg = gather_at(regression, peaks.y, peaks.x).reshape(b, d, k, 2)
        regressed = reg + torch.stack([peaks.y, peaks.x], dim=-1).to(reg.dtype)[:, :, None, :]
        cand, scores, num_cand = keypoint_candidates(heatmap, offsets, self.peak_kernel, self.num_candidates,
                                                     self.score_threshold)
        boxes = peaks.boxes_strided
        coords, kscores = self.refine(regressed, cand, scores, num_cand, boxes)
        # strided -> normalized to the true image
        true_hw = true_image_shapes[:, :2].to(coords.dtype)
        coords = coords * (peaks.stride / true_hw)[:, None, None, :]
        if self.clip_out_of_frame:
            inside = ((coords >= 0) & (coords <= 1)).all(dim=-1)
            coords = coords.clamp(0.0, 1.0)
            kscores = torch.where(inside, kscores, torch.zeros_like(kscores))
        if not self.single_class_path:  # TF's multi-class path: only valid detections of the task's class
            keep = (peaks.classes == self.class_id) & (
                torch.arange(d, device=coords.device)[None, :] < peaks.num_detections[:, None])
            coords = coords * keep[..., None, None].to(coords.dtype)
            kscores = kscores * keep[..., None].to(kscores.dtype)
        full_c = coords.new_zeros(b, d, self.num_total_keypoints, 2)
        full_s = kscores.new_zeros(b, d, self.num_total_keypoints)
        idx = torch.as_tensor(self.output_indices, device=coords.device)
        full_c[:, :, idx] = coords
        full_s[:, :, idx] = kscores
        if "detection_keypoints" in detections:  # several keypoint tasks: disjoint keypoint ids, summed
            full_c = detections["detection_keypoints"] + full_c
            full_s = detections["detection_keypoint_scores"] + full_s
        detections["detection_keypoints"] = full_c
        detections["detection_keypoint_scores"] = full_s

    def refine(self, regressed: Tensor, cand: Tensor, scores: Tensor, num_cand: Tensor, boxes: Tensor | None
               ) -> tuple[Tensor, Tensor]:
        """TF `refine_keypoints`: regressed [B, D, K, 2], candidates [B, C, K, 2], scores [B, C, K], counts [B, K],
        boxes [B, D, 4] (output grid) -> (keypoints [B, D, K, 2], scores [B, D, K])."""
        b, d, k, _ = regressed.shape
        c = cand.shape[1]
        invalid = torch.arange(c, device=cand.device)[None, :, None] >= num_cand[:, None, :]  # [B, C, K]
        diff = regressed[:, :, None] - cand[:, None]  # [B, D, C, K, 2]
        dist = torch.sqrt((diff * diff).sum(-1))
        dist = torch.where(invalid[:, None], torch.full_like(dist, 1e5), dist)
        min_dist = dist.min(dim=2).values  # [B, D, K]
        weighted = None
        if self.ranking_mode == "min_distance":
            pick = dist.argmin(dim=2)
        elif self.ranking_mode == "score_distance_ratio":
            pick = (scores[:, None] / (dist + self.score_distance_offset)).argmax(dim=2)
        elif self.ranking_mode == "score_scaled_distance_ratio":
            size = torch.maximum(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1])
            ranking = scores[:, None] / (dist + (size * self.score_distance_multiplier)[:, :, None, None])
            pick = ranking.argmax(dim=2)
        else:  # gaussian_weighted
            sigma = gaussian_sigma(boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1], 0.7)
            sigma = (self.keypoint_std_dev * self.std_dev_multiplier)[None, None, :] * sigma[..., None]
            ranking = scores[:, None] * torch.exp(-dist * dist / (2 * sigma * sigma)[:, :, None, :])
            pick = ranking.argmax(dim=2)
            weighted = ranking.max(dim=2).values
        near = torch.gather(cand[:, None].expand(b, d, c, k, 2), 2, pick[:, :, None, :, None].expand(b, d, 1, k, 2))
        near = near[:, :, 0]
        near_scores = torch.gather(scores[:, None].expand(b, d, c, k), 2, pick[:, :, None, :])[:, :, 0]
        if weighted is not None:
            near_scores = weighted
        if boxes is None:
            mask = near_scores < self.score_threshold
        else:
            yc, xc = (boxes[..., 0] + boxes[..., 2]) / 2, (boxes[..., 1] + boxes[..., 3]) / 2
            bh = (boxes[..., 2] - boxes[..., 0]) * self.box_scale
            bw = (boxes[..., 3] - boxes[..., 1]) * self.box_scale
            ymin, ymax = (yc - bh / 2)[..., None], (yc + bh / 2)[..., None]
            xmin, xmax = (xc - bw / 2)[..., None], (xc + bw / 2)[..., None]
            radius = torch.maximum(ymax - ymin, xmax - xmin) * self.search_scale
            mask = ((near[..., 0] < ymin) | (near[..., 0] > ymax) | (near[..., 1] < xmin) | (near[..., 1] > xmax)
                    | (near_scores < self.score_threshold) | (min_dist > radius))
        coords = torch.where(mask[..., None], regressed, near)
        kscores = torch.where(mask, torch.full_like(near_scores, self.unmatched_score), near_scores)
        return coords, kscores



def keypoint_candidates(heatmap: Tensor, offsets: Tensor, max_pool_kernel_size: int, max_candidates: int,
                        score_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """TF `prediction_tensors_to_keypoint_candidates`: heatmap [B, K, h, w] (probabilities), offsets [B, 2 or 2K,
    h, w] -> candidates [B, C, K, 2] (peak cell + its offset, output grid), scores [B, C, K], and per keypoint
    type the number of candidates scoring >= threshold [B, K]."""
    b, k = heatmap.shape[:2]
    scores, cy, cx, ch = top_k_peaks(heatmap, max_pool_kernel_size, max_candidates, per_channel=True)
    off = kpt.gather_channels_at(offsets, cy, cx, ch if offsets.shape[1] > 2 else None)
    cand = torch.stack([cy.to(off.dtype) + off[..., 0], cx.to(off.dtype) + off[..., 1]], dim=-1)
    c = scores.shape[1] // k
    cand = cand.reshape(b, k, c, 2).transpose(1, 2)
    scores = scores.reshape(b, k, c).transpose(1, 2)
    return cand, scores, (scores >= score_threshold).sum(dim=1)
