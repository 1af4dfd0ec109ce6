"""PASCAL VOC metrics with the TF OD API's object_detection_evaluation semantics (hand-computed cases)."""

from __future__ import annotations

import numpy as np
import pytest

from odkit.evaluation.pascal import PascalEvaluation, average_precision, precision_recall

B1 = [0.0, 0.0, 10.0, 10.0]
B2 = [20.0, 20.0, 30.0, 30.0]
B3 = [50.0, 50.0, 60.0, 60.0]


def test_average_precision_voc_area():
    p, r = precision_recall(np.array([0.9, 0.8, 0.7]), np.array([1.0, 0.0, 1.0]), 2)
    np.testing.assert_allclose(p, [1.0, 0.5, 2 / 3])
    np.testing.assert_allclose(r, [0.5, 0.5, 1.0])
    # envelope: 1.0 up to recall .5, 2/3 up to recall 1
    assert average_precision(p, r) == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


def test_duplicate_detection_is_false_positive_and_difficult_is_ignored():
    ev = PascalEvaluation({1: "a"})
    ev.add_image(np.array([B1, B2]), np.array([1, 1]),
                 np.array([B1, B1, B2]), np.array([0.9, 0.8, 0.7]), np.array([1, 1, 1]),
                 gt_difficult=np.array([False, True]))
    # B1 tp (0.9), duplicate fp (0.8), B2 matched to a difficult gt -> ignored; 1 gt counted
    assert ev.num_gt[0] == 1
    mean_ap, ap, _ = ev.evaluate()
    assert ap[0] == pytest.approx(1.0)
    assert mean_ap == pytest.approx(1.0)


def test_group_of_matches_are_ignored_and_not_counted():
    ev = PascalEvaluation({1: "a"})
    ev.add_image(np.array([B1, [15.0, 15.0, 40.0, 40.0]]), np.array([1, 1]),
                 np.array([B2, B1]), np.array([0.95, 0.6]), np.array([1, 1]),
                 gt_group_of=np.array([False, True]))
    # B2 lies inside the group-of box (IoA 1) -> ignored; B1 true positive
    assert ev.num_gt[0] == 1
    assert ev.evaluate()[1][0] == pytest.approx(1.0)


def test_class_without_groundtruth_is_nan_and_weighted_mean():
    cats = {1: "a", 2: "b", 3: "c"}
    plain, weighted = PascalEvaluation(cats), PascalEvaluation(cats, weighted=True)
    for ev in (plain, weighted):
        ev.add_image(np.array([B1, B2, B3]), np.array([1, 2, 2]),
                     np.array([B1, B2, [70.0, 70, 80, 80]]), np.array([0.9, 0.4, 0.8]), np.array([1, 2, 2]))
    m = plain.metrics()
    assert m["PascalBoxes_PerformanceByCategory/AP@0.5IOU/a"] == pytest.approx(1.0)
    # class b: fp (0.8) then tp (0.4) of 2 gts: precision .5 at recall .5 -> AP .25
    assert m["PascalBoxes_PerformanceByCategory/AP@0.5IOU/b"] == pytest.approx(0.25)
    assert np.isnan(m["PascalBoxes_PerformanceByCategory/AP@0.5IOU/c"])
    assert m["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.625)
    # pooled: 0.9 tp, 0.8 fp, 0.4 tp over 3 gts -> (1/3)*1 + (1/3)*(2/3)
    w = weighted.metrics()
    assert w["WeightedPascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(1 / 3 + 2 / 9)


def test_invalid_detection_boxes_are_dropped():
    ev = PascalEvaluation({1: "a"})
    ev.add_image(np.array([B1]), np.array([1]), np.array([[10.0, 10, 0, 0], B1]), np.array([0.99, 0.5]),
                 np.array([1, 1]))
    assert ev.evaluate()[1][0] == pytest.approx(1.0)
