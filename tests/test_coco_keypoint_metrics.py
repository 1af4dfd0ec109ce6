"""COCO keypoint metrics (OKS AP) equal pycocotools' COCOeval(iouType="keypoints") to 1e-9 (issue 16)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest

from odkit.evaluation.coco import (
    COCO_PERSON_SIGMAS,
    CocoDetections,
    CocoGroundtruth,
    evaluate,
    keypoint_summary_metrics,
)

pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402


def _pycoco(gt: CocoGroundtruth, dt: CocoDetections, sigmas: np.ndarray, with_bbox: bool = True) -> COCOeval:
    ds = {
        "images": [{"id": int(i)} for i in gt.all_image_ids],
        "categories": [{"id": int(c), "name": f"c{c}"} for c in gt.category_list],
        "annotations": [
            {"id": j + 1, "image_id": int(gt.image_ids[j]), "category_id": int(gt.category_ids[j]),
             "bbox": [float(v) for v in gt.boxes[j]], "area": float(gt.areas[j]), "iscrowd": int(gt.iscrowd[j]),
             "keypoints": [float(v) for v in gt.keypoints[j].reshape(-1)],
             "num_keypoints": int((gt.keypoints[j, :, 2] > 0).sum())}
            for j in range(len(gt.image_ids))
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = ds
        coco_gt.createIndex()
        dets = []
        for j in range(len(dt.image_ids)):
            d = {"image_id": int(dt.image_ids[j]), "category_id": int(dt.category_ids[j]),
                 "score": float(dt.scores[j]),
                 "keypoints": [float(v) for v in np.c_[dt.keypoints[j], np.ones(len(dt.keypoints[j]))].reshape(-1)]}
            if with_bbox:
                d["bbox"] = [float(v) for v in dt.boxes[j]]
            dets.append(d)
        if dets:
            coco_dt = coco_gt.loadRes(dets)
        else:
            coco_dt = COCO()
            coco_dt.dataset = {"images": ds["images"], "categories": ds["categories"], "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.params.kpt_oks_sigmas = sigmas
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def _random_case(rng: np.random.Generator, n_img: int, n_cat: int, gt_per: int, dt_per: int, k: int = 17,
                 crowd_p: float = 0.1, unlabelled_p: float = 0.15, score_levels: int | None = None,
                 size: float = 300.0):
    gi, gc, gb, ga, gcr, gk = [], [], [], [], [], []
    di, dc, db, ds, dk = [], [], [], [], []
    img_ids = rng.choice(np.arange(1, 10 * n_img + 1), size=n_img, replace=False)
    for img in img_ids:
        ng = int(rng.integers(0, gt_per + 1))
        boxes = np.c_[rng.uniform(0, size, (ng, 2)), rng.uniform(5, size * 0.6, (ng, 2))]
        kps = np.zeros((ng, k, 3))
        kps[:, :, 0] = boxes[:, None, 0] + rng.random((ng, k)) * boxes[:, None, 2]
        kps[:, :, 1] = boxes[:, None, 1] + rng.random((ng, k)) * boxes[:, None, 3]
        kps[:, :, 2] = rng.choice([0, 1, 2], size=(ng, k), p=[0.3, 0.2, 0.5])
        kps[rng.random(ng) < unlabelled_p, :, 2] = 0  # objects without a labelled keypoint: ignored
        kps[kps[:, :, 2] == 0, :2] = 0
        cats = rng.integers(1, n_cat + 1, ng)
        gi += [img] * ng
        gc += list(cats)
        gb += list(boxes)
        ga += list(boxes[:, 2] * boxes[:, 3] * rng.uniform(0.4, 0.9, ng))  # segmentation-like areas
        gcr += list(rng.random(ng) < crowd_p)
        gk += list(kps)
        nd = int(rng.integers(0, dt_per + 1))
        src = rng.integers(0, max(ng, 1), nd)
        use = (rng.random(nd) < 0.7) & (ng > 0)
        base = kps[src, :, :2] if ng else np.zeros((nd, k, 2))
        spread = rng.choice([1.0, 4.0, 15.0], size=(nd, 1, 1))
        jit = base + rng.normal(0, 1, (nd, k, 2)) * spread
        rand = rng.uniform(0, size, (nd, k, 2))
        dkp = np.where(use[:, None, None], jit, rand)
        dboxes = np.c_[dkp.min(1), dkp.max(1) - dkp.min(1) + 1.0]
        dcats = np.where(use & (rng.random(nd) < 0.85), cats[src] if ng else 1, rng.integers(1, n_cat + 1, nd))
        scores = rng.random(nd)
        if score_levels:
            scores = np.round(scores * score_levels) / score_levels
        di += [img] * nd
        dc += list(dcats)
        db += list(dboxes)
        ds += list(scores)
        dk += list(dkp)
    gt = CocoGroundtruth(
        np.array(gi, np.int64), np.array(gc, np.int64), np.array(gb, np.float64).reshape(-1, 4),
        np.array(ga, np.float64), np.array(gcr, bool), np.array(sorted(img_ids), np.int64),
        np.arange(1, n_cat + 2, dtype=np.int64), keypoints=np.array(gk, np.float64).reshape(-1, k, 3))
    dt = CocoDetections(np.array(di, np.int64), np.array(dc, np.int64), np.array(db, np.float64).reshape(-1, 4),
                        np.array(ds, np.float64), keypoints=np.array(dk, np.float64).reshape(-1, k, 2))
    return gt, dt


def _assert_same(gt: CocoGroundtruth, dt: CocoDetections, sigmas: np.ndarray | None = None) -> np.ndarray:
    sig = COCO_PERSON_SIGMAS if sigmas is None else sigmas
    ref = _pycoco(gt, dt, sig)
    res = evaluate(gt, dt, iou_type="keypoints", oks_sigmas=sigmas)
    assert res.stats.shape == (10,)
    np.testing.assert_allclose(res.stats, ref.stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.precision, ref.eval["precision"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.recall, ref.eval["recall"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.scores, ref.eval["scores"], rtol=0, atol=1e-9)
    return res.stats


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_keypoints_match_pycocotools(seed) -> None:
    rng = np.random.default_rng(seed)
    gt, dt = _random_case(rng, n_img=20, n_cat=2, gt_per=5, dt_per=12)
    stats = _assert_same(gt, dt)
    assert 0.01 < stats[0] < 0.95  # a non-trivial case


def test_custom_sigmas_few_keypoints_score_ties_and_crowds() -> None:
    rng = np.random.default_rng(7)
    gt, dt = _random_case(rng, n_img=25, n_cat=1, gt_per=4, dt_per=8, k=5, crowd_p=0.3, score_levels=3)
    _assert_same(gt, dt, sigmas=np.array([0.02, 0.05, 0.1, 0.3, 0.07]))


def test_more_than_20_detections_and_unlabelled_groundtruth() -> None:
    rng = np.random.default_rng(11)
    gt, dt = _random_case(rng, n_img=3, n_cat=1, gt_per=12, dt_per=60, unlabelled_p=0.5)
    _assert_same(gt, dt)


def test_edge_cases_match_pycocotools() -> None:
    rng = np.random.default_rng(5)
    gt, dt = _random_case(rng, n_img=4, n_cat=2, gt_per=3, dt_per=0)  # no detections
    _assert_same(gt, dt)
    gt, dt = _random_case(rng, n_img=6, n_cat=1, gt_per=3, dt_per=5, unlabelled_p=1.0)  # nothing labelled
    assert np.all(_assert_same(gt, dt) == -1)
    # perfect detections: AP 1 and the TF OD API's metric names
    kp = np.array([[[10.0, 10, 2], [20, 30, 1], [0, 0, 0]], [[200, 150, 2], [260, 170, 2], [230, 240, 2]]])
    boxes = np.array([[5.0, 5, 30, 40], [190, 140, 80, 110]])
    gt = CocoGroundtruth(np.array([3, 3]), np.array([1, 1]), boxes, np.array([1200.0, 12000.0]), np.zeros(2, bool),
                         np.array([3]), np.array([1]), keypoints=kp)
    dt = CocoDetections(np.array([3, 3]), np.array([1, 1]), boxes, np.array([0.9, 0.8]), keypoints=kp[:, :, :2])
    m = keypoint_summary_metrics(evaluate(gt, dt, iou_type="keypoints", oks_sigmas=np.full(3, 0.05)), "person")
    assert m["Keypoints_Precision/mAP ByCategory/person"] == pytest.approx(1.0)
    assert m["Keypoints_Precision/mAP (medium) ByCategory/person"] == pytest.approx(1.0)
    assert len(m) == 10 and m["Keypoints_Recall/AR@100 (large) ByCategory/person"] == pytest.approx(1.0)
    _assert_same(gt, dt, sigmas=np.full(3, 0.05))


def test_detection_area_from_keypoint_extent_like_loadres() -> None:
    """pycocotools' loadRes without a bbox sets the detection area from the keypoints' extent; passing
    those areas reproduces it."""
    rng = np.random.default_rng(9)
    gt, dt = _random_case(rng, n_img=15, n_cat=1, gt_per=4, dt_per=8, size=120.0)
    ext = dt.keypoints.max(1) - dt.keypoints.min(1)
    dt.areas = ext[:, 0] * ext[:, 1]
    ref = _pycoco(gt, dt, COCO_PERSON_SIGMAS, with_bbox=False)
    res = evaluate(gt, dt, iou_type="keypoints")
    np.testing.assert_allclose(res.stats, ref.stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(res.precision, ref.eval["precision"], rtol=0, atol=1e-9)


def test_eval_config_keypoint_metrics_through_the_accumulator() -> None:
    """parameterized_metric coco_keypoint_metrics: the class by display name, its label-map keypoint ids select
    the keypoint columns, sigmas by keypoint label; numbers equal pycocotools on the exported arrays."""
    from google.protobuf import text_format

    from odkit.data.label_map import parse_label_map
    from odkit.errors import ConfigError
    from odkit.evaluation.metrics import DetectionMetrics, keypoint_metric_specs
    from odkit.protos import eval_pb2

    lm = parse_label_map("item { id: 1 name: '/m/01g317' display_name: 'person' keypoints { id: 4 label: 'e' } "
                         "keypoints { id: 0 label: 'a' } keypoints { id: 2 label: 'c' } } "
                         "item { id: 2 name: 'dog' display_name: 'dog' }")
    cfg = text_format.Parse("parameterized_metric { coco_keypoint_metrics { class_label: 'person' "
                            "keypoint_label_to_sigmas { key: 'a' value: 0.03 } keypoint_label_to_sigmas { key: 'c' "
                            "value: 0.08 } keypoint_label_to_sigmas { key: 'e' value: 0.1 } } }",
                            eval_pb2.EvalConfig())
    specs = keypoint_metric_specs(cfg, lm)
    assert specs[0].class_id == 1 and specs[0].keypoint_ids == (0, 2, 4) and specs[0].sigmas == pytest.approx((0.03, 0.08, 0.1))
    rng = np.random.default_rng(21)
    gt, dt = _random_case(rng, n_img=12, n_cat=2, gt_per=4, dt_per=8, k=5, crowd_p=0.0)
    acc = DetectionMetrics({1: "person", 2: "dog"}, keypoint_metrics=specs)
    for img in gt.all_image_ids:
        g, d = gt.image_ids == img, dt.image_ids == img
        gb, db = gt.boxes[g], dt.boxes[d]
        acc.add_image(str(img), np.c_[gb[:, 1], gb[:, 0], gb[:, 1] + gb[:, 3], gb[:, 0] + gb[:, 2]],
                      gt.category_ids[g], np.c_[db[:, 1], db[:, 0], db[:, 1] + db[:, 3], db[:, 0] + db[:, 2]],
                      dt.scores[d], dt.category_ids[d], gt_area=gt.areas[g],
                      gt_keypoints=gt.keypoints[g][..., 1::-1], gt_keypoint_visibilities=gt.keypoints[g][..., 2] > 0,
                      det_keypoints=dt.keypoints[d][..., ::-1])
    got = acc.compute()
    # what the accumulator exports: class 1 only, keypoint columns 0, 2, 4 as (x, y, 1 where labelled)
    g1, d1 = acc.keypoint_arrays(specs[0])
    one, d_one = gt.category_ids == 1, dt.category_ids == 1
    rank = {int(v): i for i, v in enumerate(gt.all_image_ids)}  # rows follow the order images were added
    want_g = gt.keypoints[one][:, [0, 2, 4]].copy()
    want_g[..., 2] = want_g[..., 2] > 0
    g_sort = np.lexsort((np.arange(one.sum()), [rank[int(v)] for v in gt.image_ids[one]]))
    np.testing.assert_allclose(g1.keypoints, want_g[g_sort], atol=1e-4)
    assert np.all(g1.category_ids == 1) and np.all(d1.category_ids == 1)
    d_sort = np.lexsort((np.arange(d_one.sum()), [rank[int(v)] for v in dt.image_ids[d_one]]))
    np.testing.assert_allclose(d1.keypoints, dt.keypoints[d_one][:, [0, 2, 4]][d_sort], atol=1e-4)
    ref = _pycoco(g1, d1, np.array(specs[0].sigmas))  # the config's float32 values, as TF reads them
    names = ["Precision/mAP", "Precision/mAP@.50IOU", "Precision/mAP@.75IOU", "Precision/mAP (medium)",
             "Precision/mAP (large)", "Recall/AR@1", "Recall/AR@10", "Recall/AR@100", "Recall/AR@100 (medium)",
             "Recall/AR@100 (large)"]
    for i, n in enumerate(names):
        assert got[f"Keypoints_{n} ByCategory/person"] == pytest.approx(ref.stats[i], abs=1e-9), n
    assert got["Keypoints_Precision/mAP@.50IOU ByCategory/person"] > 0.0
    cfg.parameterized_metric[0].coco_keypoint_metrics.class_label = "dog"
    with pytest.raises(ConfigError, match="has no keypoints"):
        keypoint_metric_specs(cfg, lm)


@pytest.mark.parametrize("with_bbox", [True, False])
def test_eval_json_keypoints_equal_pycocotools(tmp_path, capsys, with_bbox) -> None:
    """`odkit eval-json --iou_type keypoints` on COCO files = pycocotools' COCOeval(iouType="keypoints")
    (detections without bbox: the keypoints' extent, as loadRes)."""
    import json

    from odkit.cli import main

    rng = np.random.default_rng(13)
    gt, dt = _random_case(rng, n_img=10, n_cat=2, gt_per=4, dt_per=8)
    gt.category_list = gt.category_list[:-1]
    ref = _pycoco(gt, dt, COCO_PERSON_SIGMAS, with_bbox=with_bbox)
    gt_json = {"images": [{"id": int(i)} for i in gt.all_image_ids],
               "categories": [{"id": int(c), "name": f"c{c}"} for c in gt.category_list],
               "annotations": [{"id": j + 1, "image_id": int(gt.image_ids[j]), "category_id": int(gt.category_ids[j]),
                                "bbox": gt.boxes[j].tolist(), "area": float(gt.areas[j]), "iscrowd": int(gt.iscrowd[j]),
                                "keypoints": gt.keypoints[j].reshape(-1).tolist()} for j in range(len(gt.image_ids))]}
    dets = [{"image_id": int(dt.image_ids[j]), "category_id": int(dt.category_ids[j]), "score": float(dt.scores[j]),
             "keypoints": np.c_[dt.keypoints[j], np.ones(17)].reshape(-1).tolist(),
             **({"bbox": dt.boxes[j].tolist()} if with_bbox else {})} for j in range(len(dt.image_ids))]
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    assert main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dt.json"),
                 "--iou_type", "keypoints", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert len(got) == 10 and got["Keypoints_Precision/mAP"] > 0.01
    np.testing.assert_allclose(list(got.values()), ref.stats, rtol=0, atol=1e-9)
    assert main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dt.json"),
                 "--iou_type", "keypoints", "--oks_sigmas", "0.1", "0.2"]) == 2
    assert "sigmas" in capsys.readouterr().err
