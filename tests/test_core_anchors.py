"""Anchor generators against hand-computed TF values."""

from __future__ import annotations

import math

import pytest
import torch

from odkit.core.anchors import (
    FlexibleGridAnchorGenerator,
    GridAnchorGenerator,
    MultiscaleGridAnchorGenerator,
    ssd_anchor_generator,
)


def test_multiscale_pets_640_count_and_first_anchors():
    gen = MultiscaleGridAnchorGenerator(3, 7, 4.0, (1.0, 2.0, 0.5), 2)
    assert gen.num_anchors_per_location() == [6] * 5
    shapes = [(640 // 2**lv, 640 // 2**lv) for lv in range(3, 8)]
    a = gen.generate(shapes, 640, 640)
    assert a.shape == (51150, 4)
    assert a.dtype == torch.float32
    # level 3: stride 8, base 32 px, centre (4, 4); scale fastest then aspect ratio
    s = math.sqrt(2.0)
    expected_px = [
        [4 - 16, 4 - 16, 4 + 16, 4 + 16],  # scale 1, ar 1
        [4 - 16 * s, 4 - 16 * s, 4 + 16 * s, 4 + 16 * s],  # scale 2**0.5, ar 1
        [4 - 16 / s, 4 - 16 * s, 4 + 16 / s, 4 + 16 * s],  # scale 1, ar 2 (wide)
    ]
    torch.testing.assert_close(a[:3] * 640, torch.tensor(expected_px), atol=1e-3, rtol=0)
    # second location along x: centre x = 12
    torch.testing.assert_close(a[6] * 640, torch.tensor([-12.0, -4.0, 20.0, 28.0]), atol=1e-3, rtol=0)
    # last anchor: level 7 (stride 128, base 512), location (4, 4), scale sqrt2, ar 0.5 (tall)
    c = 4 * 128 + 64
    hh, hw = 256 * s * s, 256 * s / s
    torch.testing.assert_close(a[-1] * 640, torch.tensor([c - hh, c - hw, c + hh, c + hw]), atol=1e-2, rtol=0)


def test_multiscale_offset_zero_when_not_divisible():
    gen = MultiscaleGridAnchorGenerator(3, 3, 1.0, (1.0,), 1, normalize_coordinates=False)
    a = gen.generate([(2, 2)], 12, 16)  # 12 % 8 != 0 -> y offset 0; 16 % 8 == 0 -> x offset 4
    torch.testing.assert_close(a[0], torch.tensor([-4.0, 0.0, 4.0, 8.0]))


def test_grid_anchor_generator_order_and_values():
    gen = GridAnchorGenerator(
        scales=(1.0, 2.0),
        aspect_ratios=(1.0, 4.0),
        base_anchor_size=(10, 10),
        anchor_stride=(16, 20),
        anchor_offset=(1, 2),
    )
    assert gen.num_anchors_per_location() == [4]
    a = gen.generate([(2, 3)])
    assert a.shape == (2 * 3 * 4, 4)
    expected_first_location = torch.tensor(
        [
            [1 - 5, 2 - 5, 1 + 5, 2 + 5],  # scale 1, ar 1
            [1 - 10, 2 - 10, 1 + 10, 2 + 10],  # scale 2, ar 1
            [1 - 2.5, 2 - 10, 1 + 2.5, 2 + 10],  # scale 1, ar 4: h = 10/2, w = 10*2
            [1 - 5, 2 - 20, 1 + 5, 2 + 20],  # scale 2, ar 4
        ]
    )
    torch.testing.assert_close(a[:4], expected_first_location)
    # location (y=1, x=2) is the last one: centre (17, 42)
    torch.testing.assert_close(a[-4], torch.tensor([12.0, 37.0, 22.0, 47.0]))


def test_ssd_anchors_300_count_and_values():
    gen = ssd_anchor_generator(
        num_layers=6, min_scale=0.2, max_scale=0.95, aspect_ratios=(1.0, 2.0, 0.5, 3.0, 1.0 / 3)
    )
    assert gen.num_anchors_per_location() == [3, 6, 6, 6, 6, 6]
    shapes = [(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)]
    a = gen.generate(shapes, 300, 300)
    assert a.shape == (1917, 4)
    c = 0.5 / 19
    r = math.sqrt(2.0)
    torch.testing.assert_close(a[0], torch.tensor([c - 0.05, c - 0.05, c + 0.05, c + 0.05]))
    torch.testing.assert_close(a[1], torch.tensor([c - 0.1 / r, c - 0.1 * r, c + 0.1 / r, c + 0.1 * r]))
    # last layer: scale 0.95, interpolated sqrt(0.95 * 1.0), centre 0.5
    s = math.sqrt(0.95)
    torch.testing.assert_close(a[-1], torch.tensor([0.5 - s / 2, 0.5 - s / 2, 0.5 + s / 2, 0.5 + s / 2]))


def test_ssd_anchors_non_square_image_keeps_anchors_square_in_pixels():
    gen = ssd_anchor_generator(
        num_layers=2,
        scales=[0.5, 0.8],
        aspect_ratios=(1.0,),
        interpolated_scale_aspect_ratio=0.0,
        reduce_boxes_in_lowest_layer=False,
    )
    a = gen.generate([(1, 1), (1, 1)], 100, 200)
    h = (a[0, 2] - a[0, 0]) * 100
    w = (a[0, 3] - a[0, 1]) * 200
    assert float(h) == pytest.approx(50.0)
    assert float(w) == pytest.approx(50.0)


def test_flexible_grid_and_cache():
    gen = FlexibleGridAnchorGenerator(
        base_sizes=[[8.0, 16.0]], aspect_ratios=[[1.0, 4.0]], anchor_strides=[(8, 8)], anchor_offsets=[(4, 4)]
    )
    a = gen.generate([(2, 2)], 16, 16)
    assert a.shape == (8, 4)
    torch.testing.assert_close(a[0], torch.tensor([0.0, 0.0, 8.0, 8.0]) / 16)
    torch.testing.assert_close(a[1], torch.tensor([4 - 4.0, 4 - 16.0, 4 + 4.0, 4 + 16.0]) / 16)
    assert gen.generate([(2, 2)], 16, 16) is a
    with pytest.raises(ValueError):
        gen.generate([(2, 2), (1, 1)], 16, 16)
