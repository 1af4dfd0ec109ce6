"""Batched target assignment (TF OD API `core/target_assigner.py` `TargetAssigner` + `batch_assign_targets`).

`TargetAssigner(similarity_calc, matcher, box_coder, negative_class_weight=1.0)`.
`assign(anchors [A, 4] or [B, A, 4], gt_boxes [B, M, 4], gt_classes [B, M] (1-based, 0 = padding),
gt_weights [B, M] | None, num_boxes [B] | None, num_classes, add_background_class=True, gt_labels=None)
-> Targets` with

- `cls_targets` float [B, A, K]: one-hot, K = num_classes + 1 with background column 0 when
  add_background_class, else num_classes; unmatched / ignored anchors get the unmatched label
  (background one-hot, or all zeros without a background class). `gt_labels [B, M, K]` overrides the
  one-hot (e.g. label smoothing / multi-label).
- `cls_weights` float [B, A, K]: gt weight for matched anchors, negative_class_weight for unmatched,
  0 for ignored (TF tiles the per-anchor weight over the class dimension).
- `reg_targets` float [B, A, code_size]: box_coder.encode(matched gt, anchors); 0 where unmatched.
- `reg_weights` float [B, A]: gt weight for matched anchors, else 0.
- `matches` int64 [B, A]: >= 0 gt index, -1 unmatched, -2 ignored.

Groundtruth rows that are padding (index >= num_boxes) or have weight <= 0 are not matched (TF passes
`valid_rows = weights > 0` to the matcher). Boxes and anchors must be in the same frame.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from odkit.core.box_coders import BoxCoder
from odkit.core.matchers import Matcher, gather_based_on_match
from odkit.core.similarity import RegionSimilarityCalculator


class Targets(NamedTuple):
    cls_targets: Tensor
    cls_weights: Tensor
    reg_targets: Tensor
    reg_weights: Tensor
    matches: Tensor


def valid_groundtruth(gt_weights: Tensor, num_boxes: Tensor | None) -> Tensor:
    """bool [B, M]: real rows with weight > 0."""
    valid = gt_weights > 0
    if num_boxes is not None:
        m = gt_weights.shape[1]
        valid = valid & (torch.arange(m, device=gt_weights.device).view(1, m) < num_boxes.view(-1, 1))
    return valid


def one_hot_labels(gt_classes: Tensor, num_classes: int, add_background_class: bool) -> Tensor:
    """float [B, M, K] from 1-based classes (0 = padding gives all zeros without background)."""
    k = num_classes + 1
    oh = torch.nn.functional.one_hot(gt_classes.clamp(0, num_classes).long(), k).float()
    return oh if add_background_class else oh[..., 1:]


class TargetAssigner:
    def __init__(
        self,
        similarity_calc: RegionSimilarityCalculator,
        matcher: Matcher,
        box_coder: BoxCoder,
        negative_class_weight: float = 1.0,
    ) -> None:
        self.similarity_calc = similarity_calc
        self.matcher = matcher
        self.box_coder = box_coder
        self.negative_class_weight = float(negative_class_weight)

    def assign(
        self,
        anchors: Tensor,
        gt_boxes: Tensor,
        gt_classes: Tensor,
        gt_weights: Tensor | None = None,
        num_boxes: Tensor | None = None,
        num_classes: int = 1,
        add_background_class: bool = True,
        gt_labels: Tensor | None = None,
    ) -> Targets:
        b, m = gt_boxes.shape[:2]
        if gt_weights is None:
            gt_weights = (gt_classes > 0).to(gt_boxes.dtype)
        valid = valid_groundtruth(gt_weights, num_boxes)
        if anchors.dim() == 2:
            anchors_b = anchors.unsqueeze(0)
        else:
            anchors_b = anchors
        similarity = self.similarity_calc.compare(gt_boxes, anchors_b)  # [B, M, A]
        if similarity.shape[0] != b:
            similarity = similarity.expand(b, *similarity.shape[1:])
        matches = self.matcher.match(similarity, valid)  # [B, A]
        num_anchors = matches.shape[1]

        labels = (
            gt_labels
            if gt_labels is not None
            else one_hot_labels(gt_classes, num_classes, add_background_class)
        )
        k = labels.shape[-1]
        unmatched_label = labels.new_zeros(k)
        if add_background_class:
            unmatched_label[0] = 1.0
        cls_targets = gather_based_on_match(labels, matches, unmatched_label, unmatched_label)

        w = gt_weights.to(gt_boxes.dtype)
        cls_w = gather_based_on_match(w, matches, self.negative_class_weight, 0.0)
        reg_w = gather_based_on_match(w, matches, 0.0, 0.0)

        zeros4 = gt_boxes.new_zeros(4)
        matched_boxes = gather_based_on_match(gt_boxes, matches, zeros4, zeros4)
        anchors_full = anchors_b.expand(b, num_anchors, 4)
        reg_targets = self.box_coder.encode(matched_boxes, anchors_full)
        reg_targets = torch.where((matches >= 0).unsqueeze(-1), reg_targets, torch.zeros_like(reg_targets))
        cls_weights = cls_w.unsqueeze(-1).expand(b, num_anchors, k)
        return Targets(cls_targets, cls_weights, reg_targets, reg_w, matches)

    __call__ = assign
