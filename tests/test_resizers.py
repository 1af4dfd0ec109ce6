"""Image resizers: TF OD API sizes, padding, true shapes, proto building."""

from __future__ import annotations

import pytest
import torch
from google.protobuf import text_format

from odkit.errors import ConfigError
from odkit.inputs.resizers import (
    ConditionalShapeResizer,
    FixedShapeResizer,
    KeepAspectRatioResizer,
    PadToMultipleResizer,
    build_image_resizer,
    resize_images,
    resize_to_range_size,
)
from odkit.protos import image_resizer_pb2


def _resizer(text: str):
    msg = image_resizer_pb2.ImageResizer()
    text_format.Parse(text, msg)
    return build_image_resizer(msg)


@pytest.mark.parametrize(
    ("hw", "expected"),
    [
        ((480, 640), (600, 800)),  # min side -> 600
        ((100, 1000), (102, 1024)),  # max side capped -> 1024, round(102.4)
        ((600, 600), (600, 600)),
        ((1200, 800), (900, 600)),
        ((333, 500), (600, 901)),  # 500 * 600/333 = 900.9 -> 901
    ],
)
def test_resize_to_range_sizes(hw: tuple[int, int], expected: tuple[int, int]) -> None:
    assert resize_to_range_size(hw[0], hw[1], 600, 1024) == expected


def test_keep_aspect_ratio_pad_to_max_dimension_and_true_shape() -> None:
    r = _resizer("keep_aspect_ratio_resizer { min_dimension: 32 max_dimension: 48 pad_to_max_dimension: true "
                 "per_channel_pad_value: [1, 2, 3] }")
    img = torch.full((2, 3, 20, 40), 200.0)
    out, shapes = r(img)
    assert out.shape == (2, 3, 48, 48)
    assert shapes.tolist() == [[24, 48, 3], [24, 48, 3]]
    assert torch.allclose(out[:, :, :24, :], torch.full((2, 3, 24, 48), 200.0), atol=1e-3)
    assert out[0, :, 30, 5].tolist() == [1.0, 2.0, 3.0]
    assert r.fixed_output_size == (48, 48)


def test_fixed_shape_and_grayscale() -> None:
    r = _resizer("fixed_shape_resizer { height: 16 width: 24 convert_to_grayscale: true }")
    img = torch.zeros(1, 3, 8, 8)
    img[:, 0] = 255.0
    out, shapes = r(img)
    assert out.shape == (1, 3, 16, 24)
    assert shapes.tolist() == [[16, 24, 3]]
    assert torch.allclose(out[0, :, 3, 3], torch.full((3,), 0.2989 * 255.0), atol=1e-3)


def test_resize_methods_keep_constant_images() -> None:
    img = torch.full((1, 3, 10, 14), 77.0)
    for method in ("bilinear", "nearest", "bicubic", "area"):
        out = resize_images(img, (7, 9), method)
        assert out.shape == (1, 3, 7, 9)
        assert torch.allclose(out, torch.full_like(out, 77.0), atol=1e-3), method


def test_nearest_method_from_proto() -> None:
    r = _resizer("fixed_shape_resizer { height: 4 width: 4 resize_method: NEAREST_NEIGHBOR }")
    img = torch.arange(4.0).view(1, 1, 2, 2).expand(1, 3, 2, 2)
    out, _ = r(img)
    assert out[0, 0].tolist() == [[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]


def test_conditional_shape_resizer() -> None:
    big = ConditionalShapeResizer("GREATER", 50)
    assert big.target_size(100, 200) == (25, 50)
    assert big.target_size(20, 30) == (20, 30)
    small = ConditionalShapeResizer("SMALLER", 50)
    assert small.target_size(20, 40) == (50, 100)
    assert small.target_size(60, 80) == (60, 80)
    assert isinstance(_resizer("conditional_shape_resizer { condition: SMALLER size_threshold: 10 }"),
                      ConditionalShapeResizer)


def test_pad_to_multiple_and_identity() -> None:
    r = PadToMultipleResizer(8)
    out, shapes = r(torch.ones(1, 3, 10, 17))
    assert out.shape == (1, 3, 16, 24)
    assert shapes.tolist() == [[10, 17, 3]]
    ident = _resizer("identity_resizer {}")
    out, shapes = ident(torch.ones(1, 3, 5, 6))
    assert out.shape == (1, 3, 5, 6) and shapes.tolist() == [[5, 6, 3]]


def test_bad_configs_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="min_dimension"):
        KeepAspectRatioResizer(700, 600)
    with pytest.raises(ConfigError, match="image_resizer is empty"):
        build_image_resizer(image_resizer_pb2.ImageResizer())


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_resizer_is_traceable() -> None:
    r = FixedShapeResizer(8, 8)
    traced = torch.jit.trace(r, torch.rand(1, 3, 12, 10) * 255)
    out, shapes = traced(torch.rand(1, 3, 12, 10) * 255)
    assert out.shape == (1, 3, 8, 8) and shapes.tolist() == [[8, 8, 3]]


@pytest.mark.parametrize("text", [
    "keep_aspect_ratio_resizer { min_dimension: 24 max_dimension: 40 pad_to_max_dimension: true "
    "per_channel_pad_value: [10, 20, 30] }",
    "fixed_shape_resizer { height: 20 width: 30 }",
    "fixed_shape_resizer { height: 20 width: 30 resize_method: AREA }",
    "fixed_shape_resizer { height: 20 width: 30 resize_method: NEAREST_NEIGHBOR }",
])
def test_uint8_loader_path_matches_float_forward(text: str) -> None:
    r = _resizer(text)
    img = torch.randint(0, 256, (3, 17, 29), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    fast, shape = r.resize_uint8(img)
    ref, ref_shapes = r(img[None].float())
    assert fast.dtype == torch.uint8 and fast.shape == ref.shape[1:]
    assert shape.tolist() == ref_shapes[0].tolist()
    assert int((fast.int() - ref[0].round().int()).abs().max()) <= 1
