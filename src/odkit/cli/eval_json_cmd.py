"""`odkit eval-json`: COCO metrics from a COCO groundtruth JSON and a detections JSON (no model)."""

from __future__ import annotations

import argparse

# The odkit modules a command needs are imported inside its functions: loading a command module (to parse
# its flags, print --help or refuse a bad flag) must not import torch, and `odkit predict` must run without it
# (tests/test_train_cli.py, tests/test_predict.py).


def add_arguments(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument("--groundtruth", required=True, help="COCO groundtruth JSON (images, annotations, categories)")
    p.add_argument("--detections", required=True, help="COCO results JSON: [{image_id, category_id, bbox, score}]")
    p.add_argument("--metrics_set", action="append", default=None,
                   help="coco_detection_metrics (default), pascal_voc_detection_metrics or "
                        "weighted_pascal_voc_detection_metrics (repeatable)")
    p.add_argument("--include_metrics_per_category", action="store_true", help="add per-category numbers")
    p.add_argument("--iou_type", choices=("bbox", "keypoints"), default="bbox",
                   help="keypoints: OKS keypoint AP as pycocotools' COCOeval(iouType='keypoints') (Keypoints_* keys)")
    p.add_argument("--oks_sigmas", type=float, nargs="+", default=None,
                   help="per-keypoint OKS sigmas (default: pycocotools' COCO person sigmas)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(command=command)


def run(args: argparse.Namespace) -> int:
    import json
    import math

    from odkit.evaluation.coco import evaluate, summary_metrics
    from odkit.evaluation.coco_json import load_coco_detections, load_coco_groundtruth, xywh_to_yxyx
    from odkit.evaluation.metrics import COCO, check_metrics_set
    from odkit.evaluation.outputs import format_table
    from odkit.evaluation.pascal import PascalEvaluation

    metrics_set = check_metrics_set(args.metrics_set or [COCO])
    kp = getattr(args, "iou_type", "bbox") == "keypoints"
    gt, names, table = load_coco_groundtruth(args.groundtruth, keypoints=kp)
    dt = load_coco_detections(args.detections, table, keypoints=kp)
    metrics: dict[str, float] = {}
    if kp:
        metrics_set = []
        metrics.update(_keypoint_metrics(gt, dt, args.oks_sigmas))
    for name in metrics_set:
        if name == COCO:
            metrics.update(summary_metrics(evaluate(gt, dt), names,
                                           include_metrics_per_category=args.include_metrics_per_category))
            continue
        # PASCAL on COCO files: crowd boxes are treated as difficult (ignored)
        ev = PascalEvaluation(names, weighted=name.startswith("weighted"))

        for img in range(int(gt.all_image_ids.size)):
            gs, ds = gt.image_ids == img, dt.image_ids == img
            ev.add_image(xywh_to_yxyx(gt.boxes[gs]), gt.category_ids[gs], xywh_to_yxyx(dt.boxes[ds]), dt.scores[ds],
                         dt.category_ids[ds], gt_difficult=gt.iscrowd[gs])
        metrics.update(ev.metrics())
    if args.json:
        print(json.dumps({k: (None if math.isnan(v) else v) for k, v in metrics.items()}, indent=2))
    else:
        print(format_table(metrics))
    return 0


def _keypoint_metrics(gt, dt, sigmas) -> dict[str, float]:  # noqa: ANN001 - odkit.evaluation.coco arrays
    """pycocotools' summarizeKps numbers under the TF OD API's names (without the per-class suffix)."""
    import numpy as np

    from odkit.errors import DataError
    from odkit.evaluation.coco import KEYPOINT_METRIC_PREFIX, evaluate

    try:
        res = evaluate(gt, dt, iou_type="keypoints", oks_sigmas=None if sigmas is None else np.asarray(sigmas))
    except ValueError as exc:
        raise DataError(str(exc), hint="give one --oks_sigmas value per keypoint (17 for COCO persons)") from None
    return {KEYPOINT_METRIC_PREFIX + name: float(v) for (name, *_), v in zip(res.params.summary, res.stats)}
