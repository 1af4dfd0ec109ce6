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
    gt, names, table = load_coco_groundtruth(args.groundtruth)
    dt = load_coco_detections(args.detections, table)
    metrics: dict[str, float] = {}
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
