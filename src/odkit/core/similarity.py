"""Region similarity calculators (TF OD API `core/region_similarity_calculator.py`).

`calc.compare(boxes1 [..., N, 4], boxes2 [..., M, 4]) -> [..., N, M]`; the target assigner calls
`compare(groundtruth, anchors)`. Classes: `IouSimilarity`, `IoaSimilarity` (intersection / area of
boxes2), `NegSqDistSimilarity`, `ThresholdedIouSimilarity(iou_threshold)` (score of boxes1 where
IoU > threshold, else 0; scores default to 1).
"""

from __future__ import annotations

from torch import Tensor

from odkit.core import box_ops


class RegionSimilarityCalculator:
    def compare(self, boxes1: Tensor, boxes2: Tensor, scores1: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    __call__ = compare


class IouSimilarity(RegionSimilarityCalculator):
    def compare(self, boxes1: Tensor, boxes2: Tensor, scores1: Tensor | None = None) -> Tensor:
        return box_ops.pairwise_iou(boxes1, boxes2)


class IoaSimilarity(RegionSimilarityCalculator):
    def compare(self, boxes1: Tensor, boxes2: Tensor, scores1: Tensor | None = None) -> Tensor:
        return box_ops.pairwise_ioa(boxes1, boxes2)


class NegSqDistSimilarity(RegionSimilarityCalculator):
    def compare(self, boxes1: Tensor, boxes2: Tensor, scores1: Tensor | None = None) -> Tensor:
        diff = boxes1.unsqueeze(-2) - boxes2.unsqueeze(-3)
        return -(diff * diff).sum(-1)


class ThresholdedIouSimilarity(RegionSimilarityCalculator):
    def __init__(self, iou_threshold: float = 0.0) -> None:
        self.iou_threshold = float(iou_threshold)

    def compare(self, boxes1: Tensor, boxes2: Tensor, scores1: Tensor | None = None) -> Tensor:
        iou = box_ops.pairwise_iou(boxes1, boxes2)
        s = iou.new_ones(iou.shape) if scores1 is None else scores1.unsqueeze(-1).expand_as(iou)
        return (iou > self.iou_threshold).to(iou.dtype) * s
