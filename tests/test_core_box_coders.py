"""Box coders: hand-computed codes and round trips."""

from __future__ import annotations

import math

import torch

from odkit.core.box_coders import FasterRcnnBoxCoder, MeanStddevBoxCoder, SquareBoxCoder

ANCHORS = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 15.0, 25.0]])
BOXES = torch.tensor([[0.0, 0.0, 20.0, 20.0], [4.0, 6.0, 14.0, 20.0]])


def test_faster_rcnn_encode_values():
    coder = FasterRcnnBoxCoder((10.0, 10.0, 5.0, 5.0))
    codes = coder.encode(BOXES, ANCHORS)
    expected0 = [10 * 5 / 10, 10 * 5 / 10, 5 * math.log(2), 5 * math.log(2)]
    torch.testing.assert_close(codes[0], torch.tensor(expected0), atol=1e-5, rtol=0)
    # anchor 2: centre (10, 15), h 10, w 20; box: centre (9, 13), h 10, w 14
    expected1 = [10 * -1 / 10, 10 * -2 / 20, 0.0, 5 * math.log(14 / 20)]
    torch.testing.assert_close(codes[1], torch.tensor(expected1), atol=1e-5, rtol=0)
    assert coder.code_size == 4


def test_faster_rcnn_round_trip_batched_and_unscaled():
    for coder in (FasterRcnnBoxCoder((10.0, 10.0, 5.0, 5.0)), FasterRcnnBoxCoder()):
        boxes = BOXES.unsqueeze(0).expand(3, 2, 4)
        torch.testing.assert_close(
            coder.decode(coder.encode(boxes, ANCHORS), ANCHORS), boxes, atol=1e-4, rtol=0
        )


def test_mean_stddev():
    coder = MeanStddevBoxCoder(0.1)
    codes = coder.encode(BOXES, ANCHORS)
    torch.testing.assert_close(codes[0], torch.tensor([0.0, 0.0, 100.0, 100.0]))
    torch.testing.assert_close(coder.decode(codes, ANCHORS), BOXES)


def test_square_coder():
    coder = SquareBoxCoder((10.0, 10.0, 5.0))
    codes = coder.encode(BOXES[:1], ANCHORS[:1])
    assert coder.code_size == 3
    torch.testing.assert_close(codes[0], torch.tensor([5.0, 5.0, 5 * math.log(2)]), atol=1e-5, rtol=0)
    torch.testing.assert_close(coder.decode(codes, ANCHORS[:1]), BOXES[:1], atol=1e-4, rtol=0)
