"""Collect per-image groundtruth and detections, then compute the eval_config.metrics_set metrics.

Boxes are ``[ymin, xmin, ymax, xmax]`` in absolute pixels of the original image (as the TF OD API's
eval: scale_to_absolute with original_image_spatial_shape). Groundtruth conventions (TF OD API):

- COCO: ``is_crowd`` boxes are COCO crowd regions; ``difficult`` is ignored (the TF OD API's
  CocoDetectionEvaluator does not read it), so difficult boxes count as normal groundtruth.
- PASCAL: detections matched to ``difficult`` or ``group_of`` boxes are ignored; they are not counted.
- COCO keypoints (eval_config ``parameterized_metric { coco_keypoint_metrics }``, the TF OD API's
  CocoKeypointEvaluator): per class, the label map's keypoints of that class (by id), OKS sigmas by keypoint
  name (0.05 where none are given), detection area = box area (TF's COCOWrapper), metrics
  ``Keypoints_<name> ByCategory/<class>``.
- COCO masks (``coco_mask_metrics``, the TF OD API's CocoMaskEvaluator): groundtruth and detection masks in
  the original image (uint8 [N, H, W]) are RLE-encoded when added; mask IoU, detection area = mask area,
  groundtruth area as for boxes; metrics ``DetectionMasks_*``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from odkit.errors import ConfigError, UnsupportedError
from odkit.evaluation import coco
from odkit.evaluation.pascal import PascalEvaluation

log = logging.getLogger(__name__)

COCO = "coco_detection_metrics"
COCO_MASKS = "coco_mask_metrics"
PASCAL = "pascal_voc_detection_metrics"
WEIGHTED_PASCAL = "weighted_pascal_voc_detection_metrics"
SUPPORTED_METRICS = (COCO, COCO_MASKS, PASCAL, WEIGHTED_PASCAL)


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
    gt_keypoints: np.ndarray | None = None  # float32 [N, K, 2] yx absolute
    gt_keypoint_visibilities: np.ndarray | None = None  # bool [N, K]
    det_keypoints: np.ndarray | None = None  # float32 [D, K, 2] yx absolute
    gt_masks: list[dict] | None = None  # COCO RLEs in the original image
    det_masks: list[dict] | None = None


@dataclass(frozen=True)
class KeypointMetricSpec:
    """One coco_keypoint_metrics entry resolved against the label map."""

    class_id: int
    class_name: str
    keypoint_ids: tuple[int, ...]  # sorted label-map keypoint ids = indices into the keypoint axis
    sigmas: tuple[float, ...]


@dataclass(frozen=True)
class KeypointMetricRequest:
    """One eval_config ``parameterized_metric { coco_keypoint_metrics { ... } }``, as read from the config."""

    class_label: str
    keypoint_label_to_sigmas: Mapping[str, float]


def keypoint_metric_requests(eval_config: Any) -> tuple[KeypointMetricRequest, ...]:
    """Read eval_config.parameterized_metric (only coco_keypoint_metrics exists)."""
    out = []
    for pm in getattr(eval_config, "parameterized_metric", []):
        if pm.WhichOneof("parameterized_metric") != "coco_keypoint_metrics":
            continue
        km = pm.coco_keypoint_metrics
        out.append(KeypointMetricRequest(str(km.class_label), dict(km.keypoint_label_to_sigmas)))
    return tuple(out)


def keypoint_metric_specs(eval_config: Any, label_map: Any) -> list[KeypointMetricSpec]:
    """eval_config.parameterized_metric coco_keypoint_metrics -> specs (eval_util.get_evaluators): the class by
    its (display) name in the label map, its ``keypoints { id label }``, sigmas by label (default 0.05)."""
    specs = []
    requests = getattr(eval_config, "keypoint_metrics", None)  # odkit.evaluation.settings.EvalSettings
    if requests is None:
        requests = keypoint_metric_requests(eval_config)
    for km in requests:
        names = dict(getattr(label_map, "id_to_display_name", {}) or {})
        cid = next((i for i, n in sorted(names.items()) if n == km.class_label), None)
        if cid is None:
            raise ConfigError(f"eval_config coco_keypoint_metrics class_label {km.class_label!r} is not a class "
                              "(display name) of the eval label map", hint="use the label map's display_name")
        kps = label_map.keypoints_of(cid)
        if not kps:
            raise ConfigError(f"eval_config coco_keypoint_metrics class {km.class_label!r} has no keypoints in the "
                              "label map", hint="add keypoints { id: 0 label: \"nose\" } ... to its item")
        by_id = dict(kps)
        ids = tuple(sorted(by_id))
        sig = dict(km.keypoint_label_to_sigmas)
        missing = [by_id[i] for i in ids if sig and by_id[i] not in sig]
        if missing:
            raise ConfigError(f"eval_config coco_keypoint_metrics keypoint_label_to_sigmas lacks {missing[:3]}",
                              hint="give a sigma for every keypoint of the class (TF fails on a missing one)")
        specs.append(KeypointMetricSpec(cid, km.class_label, ids,
                                        tuple(float(sig[by_id[i]]) if sig else 0.05 for i in ids)))
    return specs


def _rles(masks: np.ndarray | None, n: int) -> list[dict] | None:
    """uint8 [n, H, W] masks -> COCO RLEs (pycocotools' encoding, via faster-coco-eval's mask API)."""
    if masks is None:
        return None
    from faster_coco_eval.core import mask as mask_api

    m = np.asarray(masks)
    if m.ndim != 3 or m.shape[0] != n:
        raise ValueError(f"masks must be [{n}, H, W], got {list(m.shape)}")
    if n == 0:
        return []
    return list(mask_api.encode(np.asfortranarray(m.transpose(1, 2, 0).astype(np.uint8))))


def _arr(x: object, dtype: type, shape: tuple[int, ...] | None = None) -> np.ndarray:
    a = np.asarray(x, dtype=dtype)
    return a.reshape(shape) if shape is not None else a.reshape(-1)


def _points(x: object, n: int) -> np.ndarray:
    """[n, K, 2] float32 keypoints (K may be 0 when n is 0)."""
    a = np.asarray(x, dtype=np.float32)
    return a if a.ndim == 3 else a.reshape(n, -1 if a.size else 0, 2)


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
        keypoint_metrics: Sequence[KeypointMetricSpec] = (),
    ) -> None:
        self.categories = {int(k): str(v) for k, v in categories.items()}
        self.keypoint_metrics = list(keypoint_metrics)
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
        gt_keypoints: np.ndarray | None = None,
        gt_keypoint_visibilities: np.ndarray | None = None,
        det_keypoints: np.ndarray | None = None,
        gt_masks: np.ndarray | None = None,
        det_masks: np.ndarray | None = None,
    ) -> None:
        """One image; an empty or repeated image_id gets a unique suffix (#n) so no image is lost.
        Keypoints ([N, K, 2] / [D, K, 2] (y, x) absolute pixels) are needed by keypoint metrics only;
        masks (uint8 [N, H, W] / [D, H, W] 0/1 in the original image) by coco_mask_metrics only."""
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
        dk = None if det_keypoints is None else _points(det_keypoints, db.shape[0])
        if self.skip_unlabeled:
            labeled = set(int(c) for c in (labeled_classes if labeled_classes is not None else gt_classes))
            keep = np.isin(dc, list(labeled))
            db, ds, dc = db[keep], ds[keep], dc[keep]
            dk = None if dk is None else dk[keep]
            det_masks = None if det_masks is None else np.asarray(det_masks)[keep]
        gk = None if gt_keypoints is None else _points(gt_keypoints, n)
        gv = None
        if gk is not None:
            gv = np.isfinite(gk).all(-1) if gt_keypoint_visibilities is None else \
                np.asarray(gt_keypoint_visibilities, bool).reshape(gk.shape[:2])
        self.images.append(
            ImageRecord(
                image_id, gb, _arr(gt_classes, np.int64), flags(gt_is_crowd), flags(gt_difficult),
                flags(gt_group_of), None if gt_area is None else _arr(gt_area, np.float32), db, ds, dc,
                gk, gv, dk, _rles(gt_masks, n), _rles(det_masks, db.shape[0]),
            )
        )

    # ---- COCO -------------------------------------------------------------------------------------

    def coco_arrays(self) -> tuple[coco.CocoGroundtruth, coco.CocoDetections, list[str]]:
        """COCO-convention arrays (image ids are indices into the sorted id list, as pycocotools sorts)."""
        ids = sorted(r.image_id for r in self.images)
        pos = {k: i for i, k in enumerate(ids)}
        cat_set = np.array(sorted(self.categories), dtype=np.int64)
        gi, gc, gb, ga, gcr, di, dc, db, ds = [], [], [], [], [], [], [], [], []
        with_masks = bool(self.images) and all(r.gt_masks is not None and r.det_masks is not None
                                                for r in self.images)
        gm: list[dict] = []
        dm: list[dict] = []
        for r in self.images:
            keep = np.isin(r.gt_classes, cat_set)
            if with_masks:
                gm += [r.gt_masks[j] for j in np.flatnonzero(keep)]  # type: ignore[index]
                dkeep = np.isin(r.det_classes, cat_set)
                dm += [r.det_masks[j] for j in np.flatnonzero(dkeep)]  # type: ignore[index]
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
            np.arange(len(ids), dtype=np.int64), cat_set, masks=gm if with_masks else None,
        )
        dt = coco.CocoDetections(cat(di, np.int64), cat(dc, np.int64), cat(db, np.float64, 4), cat(ds, np.float64),
                                 masks=dm if with_masks else None)
        if with_masks:
            from faster_coco_eval.core import mask as mask_api

            dt.areas = np.asarray([float(mask_api.area(m)) for m in dm], np.float64)
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

    # ---- COCO keypoints -----------------------------------------------------------------------------

    def keypoint_arrays(self, spec: KeypointMetricSpec) -> tuple[coco.CocoGroundtruth, coco.CocoDetections]:
        """COCO arrays of one class with its keypoints (x, y, v), as CocoKeypointEvaluator exports them."""
        ids = sorted(r.image_id for r in self.images)
        pos = {k: i for i, k in enumerate(ids)}
        sel = np.asarray(spec.keypoint_ids, np.int64)
        k = len(sel)
        rows: dict[str, list[np.ndarray]] = {n: [] for n in ("gi", "gb", "ga", "gcr", "gk", "di", "db", "ds", "dk")}
        for r in self.images:
            keep = r.gt_classes == spec.class_id
            if keep.any() and (r.gt_keypoints is None or r.gt_keypoints.shape[1] <= sel.max()):
                raise UnsupportedError(f"coco_keypoint_metrics for {spec.class_name!r} needs groundtruth keypoints "
                                       f"(label map keypoint ids up to {int(sel.max())})",
                                       hint="set the eval input reader's num_keypoints")
            b = r.gt_boxes[keep]
            area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            if r.gt_area is not None:
                given = r.gt_area[keep]
                area = np.where(given > 0, given, area)
            rows["gi"].append(np.full(b.shape[0], pos[r.image_id]))
            rows["gb"].append(np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1))
            rows["ga"].append(area)
            rows["gcr"].append(r.gt_is_crowd[keep])
            if keep.any():
                kp = r.gt_keypoints[keep][:, sel]  # type: ignore[index]
                vis = r.gt_keypoint_visibilities[keep][:, sel]  # type: ignore[index]
                rows["gk"].append(np.concatenate([kp[..., ::-1], vis[..., None].astype(np.float32)], -1))
            dkeep = r.det_classes == spec.class_id
            if dkeep.any() and (r.det_keypoints is None or r.det_keypoints.shape[1] <= sel.max()):
                raise UnsupportedError(f"coco_keypoint_metrics for {spec.class_name!r} needs a model that predicts "
                                       "keypoints (detection_keypoints)",
                                       hint="remove parameterized_metric coco_keypoint_metrics from eval_config")
            b = r.det_boxes[dkeep]
            rows["di"].append(np.full(b.shape[0], pos[r.image_id]))
            rows["db"].append(np.stack([b[:, 1], b[:, 0], b[:, 3] - b[:, 1], b[:, 2] - b[:, 0]], axis=1))
            rows["ds"].append(r.det_scores[dkeep])
            if dkeep.any():
                rows["dk"].append(r.det_keypoints[dkeep][:, sel][..., ::-1])  # type: ignore[index]

        def cat(name: str, dtype: type, shape: tuple[int, ...]) -> np.ndarray:
            parts = rows[name]
            return np.concatenate(parts).astype(dtype).reshape((-1,) + shape) if parts else \
                np.zeros((0,) + shape, dtype)

        gt = coco.CocoGroundtruth(
            cat("gi", np.int64, ()), np.full(sum(len(x) for x in rows["gi"]), spec.class_id, np.int64),
            cat("gb", np.float64, (4,)), cat("ga", np.float64, ()), cat("gcr", bool, ()),
            np.arange(len(ids), dtype=np.int64), np.array([spec.class_id], np.int64),
            keypoints=cat("gk", np.float64, (k, 3)))
        dt = coco.CocoDetections(
            cat("di", np.int64, ()), np.full(sum(len(x) for x in rows["di"]), spec.class_id, np.int64),
            cat("db", np.float64, (4,)), cat("ds", np.float64, ()), keypoints=cat("dk", np.float64, (k, 2)))
        return gt, dt

    # ---- all --------------------------------------------------------------------------------------

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for spec in self.keypoint_metrics:
            gt, dt = self.keypoint_arrays(spec)
            res = coco.evaluate(gt, dt, iou_type="keypoints", oks_sigmas=np.asarray(spec.sigmas))
            out.update(coco.keypoint_summary_metrics(res, spec.class_name))
        for name in self.metrics_set:
            if name == COCO_MASKS:
                gt, dt, _ = self.coco_arrays()
                if gt.masks is None:
                    raise UnsupportedError(
                        "coco_mask_metrics needs groundtruth and detection masks",
                        hint="use a Mask R-CNN model and set load_instance_masks: true in the eval input reader")
                res = coco.evaluate(gt, dt, iou_type="segm")
                out.update(coco.summary_metrics(
                    res, self.categories, include_metrics_per_category=self.include_metrics_per_category,
                    all_metrics_per_category=self.all_metrics_per_category, prefix=coco.MASK_METRIC_PREFIX))
            elif name == COCO:
                gt, dt, _ = self.coco_arrays()
                dt.areas = None  # box areas (coco_arrays sets the mask areas for segm)
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
