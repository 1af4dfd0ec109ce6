"""Balanced sampler and hard example miner."""

from __future__ import annotations

import torch

from odkit.core.samplers import BalancedPositiveNegativeSampler, HardExampleMiner, subsample_indicator


def test_subsample_indicator_per_row_counts():
    g = torch.Generator().manual_seed(0)
    ind = torch.tensor([[True] * 10 + [False] * 5, [True, False] * 7 + [False]])
    out = subsample_indicator(ind, torch.tensor([4, 100]), g)
    assert out.sum(1).tolist() == [4, 7]
    assert not (out & ~ind).any()


def test_balanced_sampler_with_batch_size():
    g = torch.Generator().manual_seed(1)
    labels = torch.arange(200).expand(3, 200) < torch.tensor([[50], [5], [0]])
    indicator = torch.ones(3, 200, dtype=torch.bool)
    indicator[:, 190:] = False
    s = BalancedPositiveNegativeSampler(0.25).subsample(indicator, 64, labels, g)
    assert s.sum(1).tolist() == [64, 64, 64]
    assert (s & labels).sum(1).tolist() == [16, 5, 0]
    assert not (s & ~indicator).any()


def test_balanced_sampler_without_batch_size_keeps_all_positives():
    labels = torch.zeros(1, 100, dtype=torch.bool)
    labels[0, :4] = True
    s = BalancedPositiveNegativeSampler(0.25).subsample(torch.ones(1, 100, dtype=torch.bool), None, labels)
    assert (s & labels).sum() == 4
    assert (s & ~labels).sum() == 12  # floor(3 * 4)


def test_hard_example_miner_nms_and_ratio():
    boxes = torch.tensor(
        [[[0, 0, 1, 1], [0, 0, 1, 1.01], [0, 2, 1, 3], [0, 4, 1, 5], [0, 6, 1, 7], [0, 8, 1, 9]]],
        dtype=torch.float32,
    )
    cls = torch.tensor([[5.0, 4.9, 4.0, 3.0, 2.0, 1.0]])
    loc = torch.zeros(1, 6)
    matches = torch.tensor([[0, -1, -1, -1, -2, -1]])
    miner = HardExampleMiner(
        num_hard_examples=5,
        iou_threshold=0.5,
        loss_type="cls",
        max_negatives_per_positive=1,
        min_negatives_per_image=0,
    )
    sel = miner.select(loc, cls, boxes, matches)
    # NMS drops anchor 1 (duplicate of 0); order 0, 2, 3, 4, 5; one positive -> one negative (anchor 2)
    assert sel[0].tolist() == [True, False, True, False, False, False]
    loc_loss, cls_loss = miner(loc, cls, boxes, matches)
    assert float(cls_loss) == 9.0
    miner2 = HardExampleMiner(
        num_hard_examples=5,
        iou_threshold=0.5,
        loss_type="cls",
        max_negatives_per_positive=1,
        min_negatives_per_image=3,
    )
    assert miner2.select(loc, cls, boxes, matches)[0].tolist() == [True, False, True, True, False, True]
    miner3 = HardExampleMiner(num_hard_examples=2, iou_threshold=0.5, loss_type="cls")
    assert miner3.select(loc, cls, boxes, matches)[0].tolist() == [True, False, True, False, False, False]
