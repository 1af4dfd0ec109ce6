"""COCO mask AP (iouType "segm") equals pycocotools' COCOeval on random and edge-case inputs (to 1e-9)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from odkit.evaluation import coco

pycocotools = pytest.importorskip("pycocotools")
from pycocotools import mask as mask_util  # noqa: E402
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _rle(m: np.ndarray) -> dict:
    r = mask_util.encode(np.asfortranarray(m.astype(np.uint8)))
    return {"size": [int(v) for v in r["size"]], "counts": r["counts"].decode()}


def _blob(g: np.random.Generator, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    if g.random() < 0.05:
        return m  # empty mask
    y0, x0 = g.integers(0, h - 2), g.integers(0, w - 2)
    y1, x1 = g.integers(y0 + 1, h + 1), g.integers(x0 + 1, w + 1)
    m[y0:y1, x0:x1] = 1
    if g.random() < 0.5:  # holes / irregular edges
        m &= (g.random((h, w)) > 0.2).astype(np.uint8)
    return m


def _case(seed: int, n_img: int = 5, n_cat: int = 3, h: int = 48, w: int = 64, dets_per: int = 12):
    g = np.random.default_rng(seed)
    images, anns, dets = [], [], []
    for i in range(1, n_img + 1):
        images.append({"id": i, "height": h, "width": w})
        gt_masks = []
        for _ in range(int(g.integers(0, 6))):
            m = _blob(g, h, w)
            gt_masks.append(m)
            crowd = int(g.random() < 0.15)
            area = float(m.sum()) if g.random() < 0.8 else float(g.uniform(0, 100 * 100))
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": int(g.integers(1, n_cat + 1)),
                         "segmentation": _rle(m), "area": area, "iscrowd": crowd,
                         "bbox": [0.0, 0.0, 1.0, 1.0]})
        for _ in range(int(g.integers(0, dets_per))):
            if gt_masks and g.random() < 0.6:  # near a groundtruth
                m = gt_masks[int(g.integers(len(gt_masks)))].copy()
                m ^= (g.random((h, w)) < 0.004).astype(np.uint8)
            else:
                m = _blob(g, h, w)
            score = float(np.round(g.random(), 2))  # rounding makes ties
            dets.append({"image_id": i, "category_id": int(g.integers(1, n_cat + 1)),
                         "segmentation": _rle(m), "score": score})
    cats = [{"id": c} for c in range(1, n_cat + 1)]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def _pycoco(gt_json: dict, dets: list[dict]) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        cg = COCO()
        cg.dataset = gt_json
        cg.createIndex()
        cd = cg.loadRes([dict(d) for d in dets]) if dets else COCO()
        if not dets:
            cd.dataset = {"images": gt_json["images"], "annotations": [], "categories": gt_json["categories"]}
            cd.createIndex()
        ev = COCOeval(cg, cd, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _odkit(gt_json: dict, dets: list[dict]) -> coco.CocoEvalResult:
    anns = gt_json["annotations"]
    gt = coco.CocoGroundtruth(
        np.array([a["image_id"] for a in anns], np.int64), np.array([a["category_id"] for a in anns], np.int64),
        np.zeros((len(anns), 4)), np.array([a["area"] for a in anns], np.float64),
        np.array([a["iscrowd"] for a in anns], bool), np.array([im["id"] for im in gt_json["images"]], np.int64),
        np.array([c["id"] for c in gt_json["categories"]], np.int64), masks=[a["segmentation"] for a in anns])
    dm = [d["segmentation"] for d in dets]
    dt = coco.CocoDetections(
        np.array([d["image_id"] for d in dets], np.int64), np.array([d["category_id"] for d in dets], np.int64),
        np.zeros((len(dets), 4)), np.array([d["score"] for d in dets], np.float64), masks=dm,
        areas=np.array([float(mask_util.area(m)) for m in dm], np.float64))
    return coco.evaluate(gt, dt, iou_type="segm")


@pytest.mark.parametrize("seed", range(6))
def test_segm_matches_pycocotools_random(seed):
    gt_json, dets = _case(seed, dets_per=12 if seed % 2 else 4)
    ref = _pycoco(gt_json, dets)
    res = _odkit(gt_json, dets)
    np.testing.assert_allclose(res.stats, ref.stats, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.precision, ref.eval["precision"], atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.recall, ref.eval["recall"], atol=1e-9, rtol=0)


def test_segm_edge_cases_match_pycocotools():
    h, w = 20, 30
    full = np.ones((h, w), np.uint8)
    half = np.zeros((h, w), np.uint8)
    half[:, :15] = 1
    empty = np.zeros((h, w), np.uint8)
    images = [{"id": i, "height": h, "width": w} for i in (1, 2, 3)]
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "segmentation": _rle(half), "area": 300.0, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 1, "segmentation": _rle(full), "area": 600.0, "iscrowd": 1},
        {"id": 3, "image_id": 2, "category_id": 2, "segmentation": _rle(empty), "area": 0.0, "iscrowd": 0},
    ]
    for a in anns:
        a["bbox"] = [0.0, 0.0, 1.0, 1.0]
    gt_json = {"images": images, "annotations": anns, "categories": [{"id": 1}, {"id": 2}, {"id": 3}]}
    dets = [
        {"image_id": 1, "category_id": 1, "segmentation": _rle(half), "score": 0.9},  # exact
        {"image_id": 1, "category_id": 1, "segmentation": _rle(full), "score": 0.9},  # on the crowd (IoA)
        {"image_id": 1, "category_id": 1, "segmentation": _rle(empty), "score": 0.5},  # zero-area mask
        {"image_id": 2, "category_id": 2, "segmentation": _rle(half), "score": 0.4},
        {"image_id": 3, "category_id": 3, "segmentation": _rle(full), "score": 0.3},  # class without gt
    ] + [{"image_id": 1, "category_id": 1, "segmentation": _rle(half), "score": 0.1}] * 120  # > maxDets
    ref = _pycoco(gt_json, dets)
    res = _odkit(gt_json, dets)
    np.testing.assert_allclose(res.stats, ref.stats, atol=1e-9, rtol=0)
    np.testing.assert_allclose(res.precision, ref.eval["precision"], atol=1e-9, rtol=0)
    # no detections at all
    ref = _pycoco(gt_json, [])
    res = _odkit(gt_json, [])
    np.testing.assert_allclose(res.stats, ref.stats, atol=1e-9, rtol=0)


def test_detection_metrics_coco_mask_metrics_match_pycocotools():
    """DetectionMetrics (the eval loop's accumulator) with coco_mask_metrics: DetectionMasks_* keys equal
    pycocotools on the same masks; groundtruth area from the boxes as the TF OD API exports it."""
    from odkit.evaluation.metrics import DetectionMetrics

    gt_json, dets = _case(11, n_img=4, n_cat=2, dets_per=8)
    acc = DetectionMetrics({1: "a", 2: "b"}, ["coco_detection_metrics", "coco_mask_metrics"])
    by_img = {im["id"]: ([a for a in gt_json["annotations"] if a["image_id"] == im["id"]],
                         [d for d in dets if d["image_id"] == im["id"]]) for im in gt_json["images"]}
    for img, (anns, ds) in by_img.items():
        gm = np.stack([mask_util.decode(a["segmentation"]) for a in anns]) if anns else np.zeros((0, 48, 64))
        dm = np.stack([mask_util.decode(d["segmentation"]) for d in ds]) if ds else np.zeros((0, 48, 64))
        boxes = np.array([[0, 0, 10, 10]] * len(anns), np.float32).reshape(-1, 4)
        acc.add_image(str(img), boxes, np.array([a["category_id"] for a in anns]),
                      np.zeros((len(ds), 4), np.float32), np.array([d["score"] for d in ds]),
                      np.array([d["category_id"] for d in ds]), gt_is_crowd=np.array([a["iscrowd"] for a in anns]),
                      gt_masks=gm, det_masks=dm)
        for a in anns:
            a["area"] = 100.0  # the accumulator's groundtruth area: the (10 x 10) box, as coco_tools
    out = acc.compute()
    ref = _pycoco(gt_json, dets)
    assert abs(out["DetectionMasks_Precision/mAP"] - ref.stats[0]) <= 1e-9
    assert abs(out["DetectionMasks_Recall/AR@100"] - ref.stats[8]) <= 1e-9
    assert "DetectionBoxes_Precision/mAP" in out and out["DetectionMasks_Precision/mAP"] > 0


def test_groundtruth_masks_back_to_the_original_image():
    from odkit.evaluation.evaluator import gt_masks_to_original

    m = np.zeros((1, 8, 8), np.uint8)
    m[0, 0:2, 0:3] = 1  # true region 4 x 6 of a padded 8 x 8 input, original 8 x 12 (x2)
    out = gt_masks_to_original(m, np.array([4, 6, 3]), np.array([8, 12]))
    assert out.shape == (1, 8, 12)
    # align_corners nearest: source row round(i * 3 / 7), column round(j * 5 / 11)
    rows = np.floor(np.arange(8) * 3 / 7 + 0.5).astype(int)
    cols = np.floor(np.arange(12) * 5 / 11 + 0.5).astype(int)
    np.testing.assert_array_equal(out[0], m[0, :4, :6][rows][:, cols])
