"""DetectionMetrics: COCO / PASCAL conventions for crowd, difficult, unlabeled classes and image ids."""

from __future__ import annotations

import numpy as np
import pytest

from odkit.evaluation.metrics import DetectionMetrics

A = [10.0, 10.0, 50.0, 60.0]  # yxyx absolute
B = [100.0, 100.0, 150.0, 170.0]
SETS = ("coco_detection_metrics", "pascal_voc_detection_metrics")


def _two_gts(**flags):
    m = DetectionMetrics({1: "a"}, SETS)
    m.add_image("img", np.array([A, B]), np.array([1, 1]), np.array([A]), np.array([0.9]), np.array([1]), **flags)
    return m.compute()


def test_difficult_counts_for_coco_but_is_ignored_by_pascal():
    plain = _two_gts()
    diff = _two_gts(gt_difficult=np.array([False, True]))
    # COCO (as the TF OD API's CocoDetectionEvaluator) ignores `difficult`: same numbers, B missed
    assert diff["DetectionBoxes_Recall/AR@100"] == plain["DetectionBoxes_Recall/AR@100"] == pytest.approx(0.5)
    # PASCAL does not count the difficult gt: AP 1 instead of 0.5
    assert plain["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.5)
    assert diff["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(1.0)


def test_crowd_is_ignored_by_coco():
    crowd = _two_gts(gt_is_crowd=np.array([False, True]))
    assert crowd["DetectionBoxes_Recall/AR@100"] == pytest.approx(1.0)
    assert crowd["DetectionBoxes_Precision/mAP"] == pytest.approx(1.0)


def test_absolute_area_ranges_use_original_pixels():
    m = DetectionMetrics({1: "a"})
    small = np.array([[0.0, 0.0, 20.0, 20.0]])  # 400 px^2 < 32^2
    m.add_image("x", small, np.array([1]), small, np.array([0.8]), np.array([1]))
    out = m.compute()
    assert out["DetectionBoxes_Precision/mAP (small)"] == pytest.approx(1.0)
    assert out["DetectionBoxes_Precision/mAP (medium)"] == -1.0


def test_skip_predictions_for_unlabeled_class():
    def run(skip: bool) -> float:
        m = DetectionMetrics({1: "a", 2: "b"}, skip_predictions_for_unlabeled_class=skip)
        m.add_image("i1", np.array([A]), np.array([1]), np.array([A, B]), np.array([0.9, 0.95]), np.array([1, 2]))
        m.add_image("i2", np.array([B]), np.array([2]), np.array([B]), np.array([0.5]), np.array([2]))
        return m.compute()["DetectionBoxes_Precision/mAP"]

    # the class-2 detection in i1 (a class not labeled there) is a false positive unless skipped
    assert run(True) == pytest.approx(1.0)
    assert run(False) < 1.0


def test_repeated_and_empty_image_ids_are_kept_apart():
    m = DetectionMetrics({1: "a"})
    for _ in range(2):
        m.add_image("same", np.array([A]), np.array([1]), np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    m.add_image("", np.array([A]), np.array([1]), np.array([A]), np.array([0.9]), np.array([1]))
    gt, dt, ids = m.coco_arrays()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert gt.image_ids.size == 3
    assert m.compute()["DetectionBoxes_Recall/AR@100"] == pytest.approx(1 / 3)


def test_coco_json_export_round_trip():
    m = DetectionMetrics({1: "a", 2: "b"})
    m.add_image("i1", np.array([A]), np.array([1]), np.array([A, B]), np.array([0.9, 0.4]), np.array([1, 7]))
    gt_json, dets = m.coco_json()
    assert gt_json["annotations"][0]["bbox"] == [10.0, 10.0, 50.0, 40.0]  # x, y, w, h
    assert gt_json["annotations"][0]["area"] == pytest.approx(2000.0)
    assert [d["category_id"] for d in dets] == [1]  # class 7 is not in the label map
    assert dets[0]["image_id"] == "i1" and gt_json["images"] == [{"id": "i1"}]


def test_exported_json_evaluates_to_the_same_numbers(tmp_path):
    import json

    from odkit.evaluation.coco import evaluate, summary_metrics
    from odkit.evaluation.coco_json import load_coco_detections, load_coco_groundtruth

    rng = np.random.default_rng(0)
    m = DetectionMetrics({1: "a", 2: "b"})
    for i in range(6):
        g = np.sort(rng.uniform(0, 200, (3, 2, 2)), axis=1).reshape(3, 4)[:, [0, 2, 1, 3]]
        d = g + rng.normal(0, 5, g.shape)
        m.add_image(f"img{i}", g, rng.integers(1, 3, 3), d, np.round(rng.random(3), 2), rng.integers(1, 3, 3))
    direct = m.compute()
    gt_json, dets = m.coco_json()
    (tmp_path / "gt.json").write_text(json.dumps(gt_json))
    (tmp_path / "dt.json").write_text(json.dumps(dets))
    gt, names, table = load_coco_groundtruth(tmp_path / "gt.json")
    again = summary_metrics(evaluate(gt, load_coco_detections(tmp_path / "dt.json", table)), names)
    for k, v in again.items():
        assert v == pytest.approx(direct[k], abs=1e-3), k
    assert direct["DetectionBoxes_Precision/mAP"] > 0
