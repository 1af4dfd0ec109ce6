"""Batched multiclass NMS (TF post_processing_test values), soft-NMS and score converters."""

from __future__ import annotations

import math

import pytest
import torch
from torchvision.ops import nms

from odkit.core.post_processing import (
    BatchNonMaxSuppression,
    ScoreConverter,
    batch_multiclass_non_max_suppression,
    greedy_nms_top_n,
)

TF_BOXES = torch.tensor(
    [
        [0, 0, 1, 1],
        [0, 0.1, 1, 1.1],
        [0, -0.1, 1, 0.9],
        [0, 10, 1, 11],
        [0, 10.1, 1, 11.1],
        [0, 100, 1, 101],
        [0, 1000, 1, 1002],
        [0, 1000, 1, 1002.1],
    ],
    dtype=torch.float32,
)
TF_SCORES = torch.tensor(
    [[0.9, 0.01], [0.75, 0.05], [0.6, 0.01], [0.95, 0], [0.5, 0.01], [0.3, 0.01], [0.01, 0.85], [0.01, 0.5]]
)


def test_tf_multiclass_nms_example():
    boxes = TF_BOXES.view(1, 8, 1, 4)
    r = batch_multiclass_non_max_suppression(boxes, TF_SCORES[None], 0.1, 0.5, 4, 4)
    torch.testing.assert_close(
        r.boxes[0],
        torch.tensor(
            [[0, 10, 1, 11], [0, 0, 1, 1], [0, 1000, 1, 1002], [0, 100, 1, 101]], dtype=torch.float32
        ),
    )
    torch.testing.assert_close(r.scores[0], torch.tensor([0.95, 0.9, 0.85, 0.3]))
    assert r.classes[0].tolist() == [0, 0, 1, 0]
    assert r.num_detections.tolist() == [4]
    assert r.anchor_indices[0].tolist() == [3, 0, 6, 5]


def test_padding_batch_and_per_class_limit():
    boxes = torch.stack([TF_BOXES, TF_BOXES]).view(2, 8, 1, 4)
    scores = torch.stack([TF_SCORES, torch.zeros_like(TF_SCORES)])
    r = batch_multiclass_non_max_suppression(boxes, scores, 0.1, 0.5, 2, 6)
    assert r.num_detections.tolist() == [3, 0]  # class 0 capped at 2 (0.95, 0.9) + class 1 (0.85)
    assert r.scores[0].tolist()[:3] == pytest.approx([0.95, 0.9, 0.85])
    assert r.scores[0, 3:].abs().sum() == 0 and r.boxes[1].abs().sum() == 0
    assert r.boxes.shape == (2, 6, 4)


def test_per_class_boxes_and_class_agnostic():
    boxes = TF_BOXES.view(1, 8, 1, 4).expand(1, 8, 2, 4).clone()
    boxes[0, 6, 1] = torch.tensor([5.0, 5.0, 6.0, 6.0])  # class-1 box of anchor 6 differs
    r = batch_multiclass_non_max_suppression(boxes, TF_SCORES[None], 0.1, 0.5, 4, 4)
    assert r.boxes[0, 2].tolist() == [5.0, 5.0, 6.0, 6.0]
    r = batch_multiclass_non_max_suppression(
        TF_BOXES.view(1, 8, 1, 4), TF_SCORES[None], 0.1, 0.5, 1, 10, use_class_agnostic_nms=True
    )
    assert r.num_detections.tolist() == [4]
    assert r.classes[0, :4].tolist() == [0, 0, 1, 0]


def test_clip_window_and_change_frame():
    boxes = torch.tensor([[[0.0, 0.0, 0.4, 0.4]], [[0.6, 0.6, 0.9, 0.9]], [[0.1, 0.3, 0.8, 0.8]]]).view(
        1, 3, 1, 4
    )
    scores = torch.tensor([[[0.9], [0.8], [0.7]]])
    window = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    r = batch_multiclass_non_max_suppression(
        boxes, scores, 0.0, 0.5, 10, 10, clip_window=window, change_coordinate_frame=True
    )
    assert r.num_detections.tolist() == [2]  # the box fully outside the window is pruned
    torch.testing.assert_close(r.boxes[0, :2], torch.tensor([[0.0, 0.0, 0.8, 0.8], [0.2, 0.6, 1.0, 1.0]]))


def test_soft_nms_decays_overlapping_scores():
    boxes = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 0.5], [0, 5, 1, 6]], dtype=torch.float32).view(1, 3, 1, 4)
    scores = torch.tensor([[[0.9], [0.8], [0.3]]])
    r = batch_multiclass_non_max_suppression(boxes, scores, 0.0, 0.5, 10, 10, soft_nms_sigma=0.5)
    # iou(0, 1) = 0.5 -> 0.8 * exp(-0.5 * 0.25 / 0.5)
    expected = [0.9, 0.8 * math.exp(-0.25), 0.3]
    assert r.scores[0, :3].tolist() == pytest.approx(sorted(expected, reverse=True), rel=1e-5)
    assert r.num_detections.tolist() == [3]


def test_adaptive_prefix_equals_full_nms():
    g = torch.Generator().manual_seed(0)
    a, c = 3000, 2
    ctr = torch.rand(1, a, 2, generator=g) * 0.8
    size = torch.rand(1, a, 2, generator=g) * 0.2 + 0.05
    boxes = torch.cat([ctr, ctr + size], -1).view(1, a, 1, 4)
    scores = torch.rand(1, a, c, generator=g)
    full = batch_multiclass_non_max_suppression(boxes, scores, 0.05, 0.3, 300, 600, pre_nms_top_k=a)
    adaptive = batch_multiclass_non_max_suppression(boxes, scores, 0.05, 0.3, 300, 600)
    torch.testing.assert_close(adaptive.boxes, full.boxes)
    torch.testing.assert_close(adaptive.scores, full.scores)
    # reference: torchvision NMS per class
    ref0 = nms(boxes[0, :, 0][:, [1, 0, 3, 2]], scores[0, :, 0], 0.3)
    ref0 = ref0[scores[0, ref0, 0] > 0.05][:300]
    got0 = full.anchor_indices[0][(full.classes[0] == 0) & (full.scores[0] > 0)]
    assert got0.tolist() == ref0.tolist()
    # a fixed prefix of the first 1200 candidates is not enough here: the adaptive one grew
    short = batch_multiclass_non_max_suppression(boxes, scores, 0.05, 0.3, 300, 600, pre_nms_top_k=1200)
    assert int(short.num_detections[0]) < int(full.num_detections[0])


def test_greedy_top_n_matches_torchvision():
    g = torch.Generator().manual_seed(3)
    ctr = torch.rand(2, 500, 2, generator=g)
    boxes = torch.cat([ctr, ctr + 0.1], -1)
    scores = torch.rand(2, 500, generator=g)
    for n in (20, 200):
        idx, ok = greedy_nms_top_n(boxes, scores, n, 0.4)
        for i in range(2):
            ref = nms(boxes[i][:, [1, 0, 3, 2]], scores[i], 0.4)[:n]
            assert idx[i][ok[i]].tolist() == ref.tolist()


def test_score_converters_and_callable():
    x = torch.tensor([[2.0, 0.0]])
    torch.testing.assert_close(ScoreConverter("SIGMOID", 2.0)(x), torch.sigmoid(x / 2))
    torch.testing.assert_close(ScoreConverter("SOFTMAX")(x), torch.softmax(x, -1))
    torch.testing.assert_close(ScoreConverter("IDENTITY", 4.0)(x), x / 4)
    nmsf = BatchNonMaxSuppression(0.1, 0.5, 4, 4, change_coordinate_frame=False)
    r = nmsf(TF_BOXES.view(1, 8, 1, 4), TF_SCORES[None])
    assert r.num_detections.tolist() == [4]
