"""Collect per-image groundtruth and detections, then compute the eval_config.metrics_set metrics.

Boxes are ``[ymin, xmin, ymax, xmax]`` in absolute pixels of the original image (as the TF OD API's
eval: scale_to_absolute with original_image_spatial_shape). Groundtruth conventions (TF OD API):

- COCO: ``is_crowd`` boxes are COCO crowd regions; ``difficult`` is ignored (the TF OD API's
  CocoDetectionEvaluator does not read it), so difficult boxes count as normal groundtruth.
- PASCAL: detections matched to ``difficult`` or ``group_of`` boxes are ignored; they are not counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from odkit.errors import UnsupportedError
from odkit.evaluation import coco
from odkit.evaluation.pascal import PascalEvaluation

log = logging.getLogger(__name__)

COCO = "coco_detection_metrics"
PASCAL = "pascal_voc_detection_metrics"
WEIGHTED_PASCAL = "weighted_pascal_voc_detection_metrics"
SUPPORTED_METRICS = (COCO, PASCAL, WEIGHTED_PASCAL)


def check_metrics_set(metrics_set: Iterable[str], where: str | None = None) -> list[str]:
    """The metrics to compute (default coco_detection_metrics); UnsupportedError for others.

    The one check of metrics_set values (eval_config.metrics_set via odkit.evaluation.settings, and the
    --metrics_set flags); ``where`` (e.g. ``eval_config.metrics_set``) gets the bad entry's index.
    """
    given = list(metrics_set)
    for i, m in enumerate(given):
        if m and m not in SUPPORTED_METRICS:
            raise UnsupportedError(
                f"metrics_set {m!r} is not supported",
                where=f"{where}[{i}]" if where else None,
                hint=f"use one of {', '.join(SUPPORTED_METRICS)}",
            )
    return list(dict.fromkeys([m for m in given if m] or [COCO]))


@dataclass
class ImageRecord:
    image_id: str
    gt_boxes: np.ndarray  # float32 [N, 4] yxyx absolute
    gt_classes: np.ndarray  # int64 [N]
    gt_is_crowd: np.ndarray  # bool [N]
    gt_difficult: np.ndarray  # bool [N]
    gt_group_of: np.ndarray  # bool [N]
    gt_area: np.ndarray | None
    det_boxes: np.ndarray  # float32 [D, 4] yxyx absolute
    det_scores: np.ndarray  # float32 [D]
    det_classes: np.ndarray  # int64 [D]


def _arr(x: object, dtype: type, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    return a.reshape(shape) if shape is not None else a.reshape(-1)


class DetectionMetrics:
    """Accumulates images; ``compute()`` returns the TF OD API metric dict of every metrics_set entry."""

    def __init__(
        self,
        categories: Mapping[int, str],
        metrics_set: Sequence[str] = (COCO,),
        *,
        include_metrics_per_category: bool = False,
        all_metrics_per_category: bool = False,
        recall_lower_bound: float = 0.0,
        recall_upper_bound: float = 1.0,
        skip_predictions_for_unlabeled_class: bool = False,
    ) -> None:
        self.categories = {int(k): str(v) for k, v in categories.items()}
        self.metrics_set = check_metrics_set(metrics_set)
        self.include_metrics_per_category = include_metrics_per_category
        self.all_metrics_per_category = all_metrics_per_category
        self.recall_bounds = (recall_lower_bound, recall_upper_bound)
        self.skip_unlabeled = skip_predictions_for_unlabeled_class
        self.images: list[ImageRecord] = []
        self._ids: set[str] = set()
        self.coco_result: coco.CocoEvalResult | None = None
        self.pascal_curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def add_image(
        self,
        image_id: str,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        det_boxes: np.ndarray,
        det_scores: np.ndarray,
        det_classes: np.ndarray,
        *,
        gt_is_crowd: np.ndarray | None = None,
        gt_difficult: np.ndarray | None = None,
        gt_group_of: np.ndarray | None = None,
        gt_area: np.ndarray | None = None,
        labeled_classes: Iterable[int] | None = None,
    ) -> None:
        """One image; an empty or repeated image_id gets a unique suffix (#n) so no image is lost."""
        image_id = str(image_id)
        if not image_id or image_id in self._ids:
            new_id = f"{image_id}#{len(self.images)}"
            log.warning("image id %r is empty or repeated; evaluating it as %r", image_id, new_id)
            image_id = new_id
        self._ids.add(image_id)
        gb = _arr(gt_boxes, np.float32, (-1, 4))
        n = gb.shape[0]

        def flags(x: np.ndarray | None) -> np.ndarray:
            return np.zeros(n, dtype=bool) if x is None else _arr(x, bool)

        db = _arr(det_boxes, np.float32, (-1, 4))
        ds = _arr(det_scores, np.float32)
        dc = _arr(det_classes, np.int64)
        if self.skip_unlabeled:
            labeled = set(int(c) for c in (labeled_classes if labeled_classes is not None else gt_classes))
            keep = np.isin(dc, list(labeled))
            db, ds, dc = db[keep], ds[keep], dc[keep]
        self.images.append(
            ImageRecord(
                image_id, gb, _arr(gt_classes, np.int64), flags(gt_is_crowd), flags(gt_difficult),
                flags(gt_group_of), None if gt_area is None else _arr(gt_area, np.float32), db, ds, dc,
            )
        )

    # ---- COCO -------------------------------------------------------------------------------------

    def coco_arrays(self) -> tuple[coco.CocoGroundtruth, coco.CocoDetections, list[str]]:
        """COCO-convention arrays (image ids are indices into the sorted id list, as pycocotools sorts)."""
        ids = sorted(r.image_id for r in self.images)
        pos = {k: i for i, k in enumerate(ids)}
        cat_set = np.array(sorted(self.categories), dtype=np.int64)
        gi, gc, gb, ga, gcr, di, dc, db, ds = [], [], [], [], [], [], [], [], []
        for r in self.images:
            keep = np.isin(r.gt_classes, cat_set)
            b = r.gt_boxes[keep]
            # coco_tools._ConvertBoxToCOCOFormat / area, in float32 as the TF OD API
            xywh = np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1)
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            if r.gt_area is not None:
                given = r.gt_area[keep]
                area = np.where(given > 0, given, area)
            gi.append(np.full(b.shape[0], pos[r.image_id]))
            gc.append(r.gt_classes[keep])
            gb.append(xywh)
            ga.append(area)
            gcr.append(r.gt_is_crowd[keep])
            keep = np.isin(r.det_classes, cat_set)
            b = r.det_boxes[keep]
            di.append(np.full(b.shape[0], pos[r.image_id]))
            dc.append(r.det_classes[keep])
            db.append(np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1))
            ds.append(r.det_scores[keep])

        def cat(parts: list[np.ndarray], dtype: type, width: int = 0) -> np.ndarray:
            if not parts:
                return np.zeros((0, width) if width else 0, dtype=dtype)
            return np.concatenate(parts).astype(dtype)

        gt = coco.CocoGroundtruth(
            cat(gi, np.int64), cat(gc, np.int64), cat(gb, np.float64, 4), cat(ga, np.float64), cat(gcr, bool),
            np.arange(len(ids), dtype=np.int64), cat_set,
        )
        dt = coco.CocoDetections(cat(di, np.int64), cat(dc, np.int64), cat(db, np.float64, 4), cat(ds, np.float64))
        return gt, dt, ids

    def coco_json(self) -> tuple[dict, list[dict]]:
        """(groundtruth dict, detections list) in COCO JSON format, as coco_tools exports them.

        Image ids are the records' source ids (strings), as the TF OD API uses them.
        """
        gt, dt, ids = self.coco_arrays()
        gt_json = {
            "images": [{"id": name} for name in ids],
            "categories": [{"id": k, "name": v} for k, v in sorted(self.categories.items())],
            "annotations": [
                {"id": j + 1, "image_id": ids[int(gt.image_ids[j])], "category_id": int(gt.category_ids[j]),
                 "bbox": [float(v) for v in gt.boxes[j]], "area": float(gt.areas[j]),
                 "iscrowd": int(gt.iscrowd[j])}
                for j in range(gt.image_ids.size)
            ],
        }
        dets = [
            {"image_id": ids[int(dt.image_ids[j])], "category_id": int(dt.category_ids[j]),
             "bbox": [round(float(v), 4) for v in dt.boxes[j]], "score": round(float(dt.scores[j]), 4)}
            for j in range(dt.image_ids.size)
        ]
        return gt_json, dets

    # ---- all --------------------------------------------------------------------------------------

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name in self.metrics_set:
            if name == COCO:
                gt, dt, _ = self.coco_arrays()
                self.coco_result = coco.evaluate(gt, dt)
                out.update(
                    coco.summary_metrics(
                        self.coco_result,
                        self.categories,
                        include_metrics_per_category=self.include_metrics_per_category,
                        all_metrics_per_category=self.all_metrics_per_category,
                    )
                )
            else:
                ev = PascalEvaluation(self.categories, weighted=name == WEIGHTED_PASCAL,
                                      recall_lower_bound=self.recall_bounds[0],
                                      recall_upper_bound=self.recall_bounds[1])
                for r in self.images:
                    ev.add_image(r.gt_boxes, r.gt_classes, r.det_boxes, r.det_scores, r.det_classes,
                                 r.gt_difficult, r.gt_group_of)
                out.update(ev.metrics())
                if name == PASCAL:
                    self.pascal_curves = ev.evaluate()[2]
        return out
