"""Time odkit's COCO box evaluation against pycocotools on the same synthetic detections.

    .venv/bin/python benchmarks/coco_eval.py                 # 5,000 images x 100 detections
    .venv/bin/python benchmarks/coco_eval.py --images 500    # quicker

Prints both timings and both sets of 12 numbers (they must be identical).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import time

import numpy as np

from odkit.evaluation.coco import COCO_METRIC_KEYS, CocoDetections, CocoGroundtruth, evaluate


def make_data(n_images: int, dets_per_image: int, n_cats: int, seed: int) -> tuple[CocoGroundtruth, CocoDetections]:
    rng = np.random.default_rng(seed)
    gi, gc, gb, di, dc, db, ds = [], [], [], [], [], [], []
    for img in range(1, n_images + 1):
        ng = int(rng.integers(1, 15))
        wh = rng.uniform(8, 300, (ng, 2))
        xy = rng.uniform(0, 640 - wh)
        boxes = np.c_[xy, wh]
        cats = rng.integers(1, n_cats + 1, ng)
        gi.append(np.full(ng, img))
        gc.append(cats)
        gb.append(boxes)
        src = rng.integers(0, ng, dets_per_image)
        jitter = rng.normal(0, 0.08, (dets_per_image, 4)) * np.c_[wh[src], wh[src]]
        d = boxes[src] + jitter
        d[:, 2:] = np.abs(d[:, 2:]) + 1
        rand = rng.random(dets_per_image) < 0.4
        d[rand] = np.c_[rng.uniform(0, 500, (rand.sum(), 2)), rng.uniform(8, 300, (rand.sum(), 2))]
        dcat = np.where(rng.random(dets_per_image) < 0.85, cats[src], rng.integers(1, n_cats + 1, dets_per_image))
        di.append(np.full(dets_per_image, img))
        dc.append(dcat)
        db.append(d)
        ds.append(np.round(rng.random(dets_per_image), 3))  # rounded: ties in scores
    gboxes = np.concatenate(gb)
    gt = CocoGroundtruth(np.concatenate(gi), np.concatenate(gc), gboxes, gboxes[:, 2] * gboxes[:, 3],
                         rng.random(len(gboxes)) < 0.02, np.arange(1, n_images + 1), np.arange(1, n_cats + 1))
    dt = CocoDetections(np.concatenate(di), np.concatenate(dc), np.concatenate(db), np.concatenate(ds))
    return gt, dt


def _coco_dicts(gt: CocoGroundtruth, dt: CocoDetections) -> tuple[dict, list[dict]]:
    ds = {
        "images": [{"id": int(i)} for i in gt.all_image_ids],
        "categories": [{"id": int(c), "name": str(c)} for c in gt.category_list],
        "annotations": [
            {"id": j + 1, "image_id": int(gt.image_ids[j]), "category_id": int(gt.category_ids[j]),
             "bbox": gt.boxes[j].tolist(), "area": float(gt.areas[j]), "iscrowd": int(gt.iscrowd[j])}
            for j in range(len(gt.image_ids))
        ],
    }
    dets = [
        {"image_id": int(dt.image_ids[j]), "category_id": int(dt.category_ids[j]), "bbox": dt.boxes[j].tolist(),
         "score": float(dt.scores[j])}
        for j in range(len(dt.image_ids))
    ]
    return ds, dets


def run_faster_coco_eval(gt: CocoGroundtruth, dt: CocoDetections) -> tuple[np.ndarray, float] | None:
    """faster-coco-eval (C++), for reference; None when it is not installed."""
    try:
        from faster_coco_eval import COCO, COCOeval_faster
    except ImportError:
        return None
    ds, dets = _coco_dicts(gt, dt)
    coco_gt = COCO(ds)
    coco_dt = coco_gt.loadRes(dets)
    t0 = time.perf_counter()
    ev = COCOeval_faster(coco_gt, coco_dt, "bbox", print_function=lambda *a, **k: None)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return np.asarray(ev.stats[:12]), time.perf_counter() - t0


def run_pycocotools(gt: CocoGroundtruth, dt: CocoDetections) -> tuple[np.ndarray, float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds, dets = _coco_dicts(gt, dt)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ds
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        t1 = time.perf_counter()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    t2 = time.perf_counter()
    return ev.stats, t2 - t1, t1 - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--dets", type=int, default=100, help="detections per image")
    ap.add_argument("--categories", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip_pycocotools", action="store_true")
    args = ap.parse_args()

    gt, dt = make_data(args.images, args.dets, args.categories, args.seed)
    print(f"{args.images} images, {len(gt.image_ids)} groundtruth boxes, {len(dt.image_ids)} detections, "
          f"{args.categories} categories")
    t0 = time.perf_counter()
    res = evaluate(gt, dt)
    t_odkit = time.perf_counter() - t0
    print(f"odkit (evaluate + accumulate + summarize): {t_odkit:8.2f} s")
    if args.skip_pycocotools:
        for k, v in zip(COCO_METRIC_KEYS, res.stats):
            print(f"  {k:<40} {v:.6f}")
        return
    stats, t_ref, t_load = run_pycocotools(gt, dt)
    print(f"pycocotools (evaluate + accumulate + summarize): {t_ref:8.2f} s  (+ {t_load:.2f} s loadRes)")
    print(f"speed-up: {t_ref / t_odkit:.1f}x")
    print(f"  {'metric':<40} {'odkit':>10} {'pycocotools':>12}")
    for k, a, b in zip(COCO_METRIC_KEYS, res.stats, stats):
        print(f"  {k:<40} {a:10.6f} {b:12.6f}")
    diff = float(np.max(np.abs(res.stats - stats)))
    print(f"max |difference| = {diff:.3g}  ->  {'IDENTICAL' if diff <= 1e-12 else 'DIFFERENT'}")
    fce = run_faster_coco_eval(gt, dt)
    if fce is not None:
        fdiff = float(np.max(np.abs(fce[0] - stats)))
        print(f"for reference, faster-coco-eval: {fce[1]:.2f} s, max |difference| to pycocotools = {fdiff:.3g}")


if __name__ == "__main__":
    main()
