"""PASCAL VOC box metrics with the TF OD API's object_detection_evaluation semantics.

`pascal_voc_detection_metrics` (mean of per-class AP at IoU 0.5) and
`weighted_pascal_voc_detection_metrics` (AP of all classes' detections pooled). Per image and
class, detections are sorted by score and greedily matched to the non-group-of groundtruth
with the highest IoU; detections matched to a difficult box are ignored; with the PASCAL
group-of weight of 0, detections matched (IoA >= 0.5) to group-of boxes are ignored too.
AP is the VOC2010+ area under the interpolated precision/recall curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def box_area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] intersection areas of [ymin, xmin, ymax, xmax] boxes (np_box_ops.intersection)."""
    ymin1, xmin1, ymax1, xmax1 = np.split(a, 4, axis=1)
    ymin2, xmin2, ymax2, xmax2 = np.split(b, 4, axis=1)
    h = np.maximum(0.0, np.minimum(ymax1, ymax2.T) - np.maximum(ymin1, ymin2.T))
    w = np.maximum(0.0, np.minimum(xmax1, xmax2.T) - np.maximum(xmin1, xmin2.T))
    return h * w


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = box_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / union


def box_ioa(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] intersection over the area of each box in ``a``... as np_box_ops.ioa(a, b): over b's area."""
    inter = box_intersection(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / box_area(b)[None, :]


def precision_recall(scores: np.ndarray, labels: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """metrics.compute_precision_recall: sorted by score (numpy's default argsort, reversed)."""
    order = np.argsort(scores)[::-1]
    tp = labels[order].astype(float)
    fp = (tp <= 0).astype(float)
    ctp = np.cumsum(tp)
    cfp = np.cumsum(fp)
    return ctp / (ctp + cfp), ctp / num_gt


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """metrics.compute_average_precision (area under the monotone precision envelope)."""
    if precision.size == 0:
        return 0.0
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    idx = np.where(r[1:] != r[:-1])[0] + 1
    return float(np.sum((r[idx] - r[idx - 1]) * p[idx]))


def _tp_fp_single_class(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    gt_difficult: np.ndarray,
    gt_group_of: np.ndarray,
    iou_threshold: float,
) -> tuple[np.ndarray, np.ndarray]:
    """per_image_evaluation._compute_tp_fp_for_single_class (box mode, group_of_weight 0)."""
    if det_boxes.size == 0:
        return np.zeros(0, dtype=float), np.zeros(0, dtype=float)
    order = np.argsort(det_scores)[::-1]  # np_box_list_ops.sort_by_field (descending)
    det_boxes, scores = det_boxes[order], det_scores[order]
    n = scores.size
    if gt_boxes.size == 0:
        return scores, np.zeros(n, dtype=float)
    iou = box_iou(det_boxes, gt_boxes[~gt_group_of])
    ioa = box_ioa(gt_boxes[gt_group_of], det_boxes).T  # [n, n_group_of]
    tp = np.zeros(n, dtype=bool)
    to_difficult = np.zeros(n, dtype=bool)
    to_group_of = np.zeros(n, dtype=bool)
    if iou.shape[1] > 0:
        difficult = gt_difficult[~gt_group_of]
        best = np.argmax(iou, axis=1)
        detected = np.zeros(iou.shape[1], dtype=bool)
        for i in range(n):
            g = best[i]
            if iou[i, g] >= iou_threshold:
                if not difficult[g]:
                    if not detected[g]:
                        tp[i] = True
                        detected[g] = True
                else:
                    to_difficult[i] = True
    if ioa.shape[1] > 0:
        best = np.argmax(ioa, axis=1)
        for i in range(n):
            if not tp[i] and not to_difficult[i] and ioa[i, best[i]] >= iou_threshold:
                to_group_of[i] = True
    valid = ~to_difficult & ~to_group_of
    return scores[valid], tp[valid].astype(float)


@dataclass
class PascalEvaluation:
    """object_detection_evaluation.ObjectDetectionEvaluation for boxes; class ids are 1-based."""

    categories: dict[int, str]
    iou_threshold: float = 0.5
    weighted: bool = False
    recall_lower_bound: float = 0.0
    recall_upper_bound: float = 1.0
    num_gt: np.ndarray = field(init=False)
    scores: list[list[np.ndarray]] = field(init=False)
    labels: list[list[np.ndarray]] = field(init=False)

    def __post_init__(self) -> None:
        self.num_class = max(self.categories, default=0)
        self.num_gt = np.zeros(self.num_class, dtype=float)
        self.scores = [[] for _ in range(self.num_class)]
        self.labels = [[] for _ in range(self.num_class)]

    def add_image(
        self,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_classes: np.ndarray,
        gt_difficult: np.ndarray | None = None,
        gt_group_of: np.ndarray | None = None,
    ) -> None:
        """One image: boxes [ymin, xmin, ymax, xmax] (any consistent frame), classes 1-based."""
        gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
        gt_classes = np.asarray(gt_classes, dtype=np.int64).reshape(-1)
        ng = gt_classes.size
        diff = np.zeros(ng, bool) if gt_difficult is None else np.asarray(gt_difficult, dtype=bool).reshape(-1)
        group = np.zeros(ng, bool) if gt_group_of is None else np.asarray(gt_group_of, dtype=bool).reshape(-1)
        det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
        det_scores = np.asarray(det_scores, dtype=np.float64).reshape(-1)
        det_classes = np.asarray(det_classes, dtype=np.int64).reshape(-1)
        counted = gt_classes[~diff & ~group]
        self.num_gt += np.bincount(counted[(counted >= 1) & (counted <= self.num_class)] - 1,
                                   minlength=self.num_class)[: self.num_class]
        # per_image_evaluation._remove_invalid_boxes
        valid = (det_boxes[:, 0] < det_boxes[:, 2]) & (det_boxes[:, 1] < det_boxes[:, 3])
        det_boxes, det_scores, det_classes = det_boxes[valid], det_scores[valid], det_classes[valid]
        for c in np.unique(det_classes):
            if c < 1 or c > self.num_class:
                continue
            gsel = gt_classes == c
            dsel = det_classes == c
            s, lab = _tp_fp_single_class(det_boxes[dsel], det_scores[dsel], gt_boxes[gsel], diff[gsel],
                                         group[gsel], self.iou_threshold)
            if s.size:
                self.scores[c - 1].append(s)
                self.labels[c - 1].append(lab)

    def _pr(self, scores: np.ndarray, labels: np.ndarray, num_gt: float) -> tuple[np.ndarray, np.ndarray]:
        p, r = precision_recall(scores, labels, num_gt)
        keep = (r >= self.recall_lower_bound) & (r <= self.recall_upper_bound)
        return p[keep], r[keep]

    def evaluate(self) -> tuple[float, np.ndarray, dict[int, tuple[np.ndarray, np.ndarray]]]:
        """(mean AP, per-class AP [num_class] with NaN for classes without groundtruth, PR curves)."""
        ap = np.full(self.num_class, np.nan)
        curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        all_s, all_l = [np.zeros(0)], [np.zeros(0)]
        for k in range(self.num_class):
            if self.num_gt[k] == 0:
                continue
            s = np.concatenate(self.scores[k]) if self.scores[k] else np.zeros(0)
            lab = np.concatenate(self.labels[k]) if self.labels[k] else np.zeros(0)
            all_s.append(s)
            all_l.append(lab)
            p, r = self._pr(s, lab, self.num_gt[k])
            curves[k + 1] = (p, r)
            ap[k] = average_precision(p, r)
        if self.weighted:
            p, r = self._pr(np.concatenate(all_s), np.concatenate(all_l), float(self.num_gt.sum()))
            mean_ap = average_precision(p, r)
        else:
            mean_ap = float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float("nan")
        return mean_ap, ap, curves

    def metrics(self) -> dict[str, float]:
        """TF OD API keys: PascalBoxes_Precision/mAP@0.5IOU, PascalBoxes_PerformanceByCategory/AP@0.5IOU/<name>."""
        prefix = "WeightedPascalBoxes_" if self.weighted else "PascalBoxes_"
        mean_ap, ap, _ = self.evaluate()
        out = {f"{prefix}Precision/mAP@{self.iou_threshold}IOU": mean_ap}
        for k in range(self.num_class):
            if k + 1 in self.categories:
                out[f"{prefix}PerformanceByCategory/AP@{self.iou_threshold}IOU/{self.categories[k + 1]}"] = float(ap[k])
        return out
