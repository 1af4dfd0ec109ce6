"""odkit.evaluation.coco equals pycocotools' COCOeval on the same boxes (to 1e-12)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from odkit.evaluation.coco import (
    COCO_METRIC_KEYS,
    CocoDetections,
    CocoGroundtruth,
    evaluate,
    summary_metrics,
)

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycoco(gt: CocoGroundtruth, dt: CocoDetections) -> COCOeval:
    ds = {
        "images": [{"id": int(i)} for i in gt.all_image_ids],
        "categories": [{"id": int(c), "name": f"c{c}"} for c in gt.category_list],
        "annotations": [
            {
                "id": j + 1,
                "image_id": int(gt.image_ids[j]),
                "category_id": int(gt.category_ids[j]),
                "bbox": [float(v) for v in gt.boxes[j]],
                "area": float(gt.areas[j]),
                "iscrowd": int(gt.iscrowd[j]),
            }
            for j in range(len(gt.image_ids))
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ds
        coco_gt.createIndex()
        dets = [
            {
                "image_id": int(dt.image_ids[j]),
                "category_id": int(dt.category_ids[j]),
                "bbox": [float(v) for v in dt.boxes[j]],
                "score": float(dt.scores[j]),
            }
            for j in range(len(dt.image_ids))
        ]
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:  # loadRes cannot take an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": ds["images"], "categories": ds["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _random_case(rng: np.random.Generator, n_img: int, n_cat: int, gt_per: int, dt_per: int,
                 crowd_p: float = 0.1, score_levels: int | None = None, size: float = 200.0):
    gi, gc, gb, gcrowd = [], [], [], []
    di, dc, db, ds = [], [], [], []
    img_ids = rng.choice(np.arange(1, 10 * n_img + 1), size=n_img, replace=False)
    for img in img_ids:
        ng = rng.integers(0, gt_per + 1)
        boxes = np.c_[rng.uniform(0, size, (ng, 2)), rng.uniform(2, size * 0.7, (ng, 2))]
        cats = rng.integers(1, n_cat + 1, ng)
        gi += [img] * ng
        gc += list(cats)
        gb += list(boxes)
        gcrowd += list(rng.random(ng) < crowd_p)
        nd = rng.integers(0, dt_per + 1)
        # half jittered copies of gts, half random
        src_idx = rng.integers(0, max(ng, 1), nd)
        src = boxes[src_idx] if ng else np.zeros((nd, 4))
        jit = src + rng.normal(0, 4, (nd, 4))
        rand = np.c_[rng.uniform(0, size, (nd, 2)), rng.uniform(1, size / 2, (nd, 2))]
        use_jit = (rng.random(nd) < 0.6) & (ng > 0)
        dboxes = np.where(use_jit[:, None], jit, rand)
        dboxes[:, 2:] = np.abs(dboxes[:, 2:]) + 0.5
        dcats = np.where(use_jit & (rng.random(nd) < 0.8), cats[src_idx] if ng else 1,
                         rng.integers(1, n_cat + 1, nd))
        scores = rng.random(nd)
        if score_levels:
            scores = np.round(scores * score_levels) / score_levels
        di += [img] * nd
        dc += list(dcats)
        db += list(dboxes)
        ds += list(scores)
    gb_arr = np.array(gb, dtype=np.float64).reshape(-1, 4)
    gt = CocoGroundtruth(
        image_ids=np.array(gi, dtype=np.int64),
        category_ids=np.array(gc, dtype=np.int64),
        boxes=gb_arr,
        areas=gb_arr[:, 2] * gb_arr[:, 3],
        iscrowd=np.array(gcrowd, dtype=bool),
        all_image_ids=np.array(sorted(img_ids), dtype=np.int64),
        category_list=np.arange(1, n_cat + 2, dtype=np.int64),  # the last category never has gt
    )
    dt = CocoDetections(
        image_ids=np.array(di, dtype=np.int64),
        category_ids=np.array(dc, dtype=np.int64),
        boxes=np.array(db, dtype=np.float64).reshape(-1, 4),
        scores=np.array(ds, dtype=np.float64),
    )
    return gt, dt


def _assert_same(gt: CocoGroundtruth, dt: CocoDetections) -> None:
    ref = _pycoco(gt, dt)
    res = evaluate(gt, dt)
    np.testing.assert_allclose(res.stats, ref.stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.precision, ref.eval["precision"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.recall, ref.eval["recall"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.scores, ref.eval["scores"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_detections_match_pycocotools(seed):
    rng = np.random.default_rng(seed)
    gt, dt = _random_case(rng, n_img=25, n_cat=4, gt_per=6, dt_per=15)
    _assert_same(gt, dt)


def test_score_ties_match_pycocotools():
    rng = np.random.default_rng(10)
    gt, dt = _random_case(rng, n_img=30, n_cat=3, gt_per=5, dt_per=12, score_levels=4)
    _assert_same(gt, dt)


def test_many_detections_per_image_match_pycocotools():
    # > 100 detections per (image, category): the top-100 cut and AR@1/AR@10 truncation
    rng = np.random.default_rng(3)
    gt, dt = _random_case(rng, n_img=4, n_cat=1, gt_per=30, dt_per=250, crowd_p=0.05)
    _assert_same(gt, dt)


def test_crowd_and_small_boxes_match_pycocotools():
    rng = np.random.default_rng(4)
    gt, dt = _random_case(rng, n_img=20, n_cat=2, gt_per=6, dt_per=10, crowd_p=0.4, size=60.0)
    _assert_same(gt, dt)


def test_no_detections():
    rng = np.random.default_rng(5)
    gt, dt = _random_case(rng, n_img=5, n_cat=2, gt_per=4, dt_per=0)
    assert dt.image_ids.size == 0
    _assert_same(gt, dt)
    res = evaluate(gt, dt)
    assert res.stats[0] == 0.0


def test_no_groundtruth_gives_minus_one():
    gt = CocoGroundtruth(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0),
                         np.zeros(0, bool), np.array([1, 2]), np.array([1, 2]))
    dt = CocoDetections(np.array([1]), np.array([1]), np.array([[1.0, 1, 5, 5]]), np.array([0.9]))
    res = evaluate(gt, dt)
    assert np.all(res.stats == -1)


def test_perfect_detections_score_one_and_keys():
    boxes = np.array([[10.0, 10, 50, 40], [100, 80, 120, 150]])
    gt = CocoGroundtruth(np.array([7, 7]), np.array([1, 2]), boxes, boxes[:, 2] * boxes[:, 3],
                         np.zeros(2, bool), np.array([7]), np.array([1, 2]))
    dt = CocoDetections(np.array([7, 7]), np.array([1, 2]), boxes.copy(), np.array([0.9, 0.8]))
    m = summary_metrics(evaluate(gt, dt), {1: "cat", 2: "dog"}, include_metrics_per_category=True)
    assert tuple(k for k in m if "ByCategory" not in k) == COCO_METRIC_KEYS
    assert m["DetectionBoxes_Precision/mAP"] == pytest.approx(1.0)
    assert m["DetectionBoxes_Precision/mAP (small)"] == -1.0  # no small boxes
    assert m["DetectionBoxes_Recall/AR@1"] == pytest.approx(1.0)
    assert m["DetectionBoxes_PerformanceByCategory/mAP/dog"] == pytest.approx(1.0)


def test_per_category_matches_pycocotools_slices():
    rng = np.random.default_rng(6)
    gt, dt = _random_case(rng, n_img=15, n_cat=3, gt_per=5, dt_per=10)
    ref = _pycoco(gt, dt)
    res = evaluate(gt, dt)
    per = res.category_stats()
    for k in range(len(res.category_ids)):
        s = ref.eval["precision"][:, :, k, 0, 2]
        want = np.mean(s[s > -1]) if (s > -1).any() else -1
        assert per[0, k] == pytest.approx(want, abs=1e-12)


def test_identical_boxes_iou_ties_match_pycocotools():
    # duplicated gt and detection boxes on a coarse grid: equal IoUs everywhere
    rng = np.random.default_rng(8)
    n = 60
    img = rng.integers(1, 6, n)
    cat = rng.integers(1, 3, n)
    boxes = np.c_[rng.integers(0, 4, (n, 2)) * 10.0, rng.integers(1, 4, (n, 2)) * 10.0]
    gsel = rng.random(n) < 0.5
    gt = CocoGroundtruth(img[gsel], cat[gsel], boxes[gsel], boxes[gsel, 2] * boxes[gsel, 3],
                         rng.random(gsel.sum()) < 0.15, np.arange(1, 6), np.array([1, 2]))
    dt = CocoDetections(img, cat, boxes, np.round(rng.random(n) * 3) / 3)
    _assert_same(gt, dt)
