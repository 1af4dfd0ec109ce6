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


def _tf_legacy_bilinear_1d(values: list[float], out: int) -> list[float]:
    """TF resize_bilinear (align_corners=False, half_pixel_centers=False) along one axis, by hand."""
    import numpy as np

    n = len(values)
    scale = np.float32(n) / np.float32(out)
    res = []
    for i in range(out):
        src = np.float32(i) * scale
        lo, hi = int(np.floor(src)), min(int(np.ceil(src)), n - 1)
        lerp = src - np.floor(src)
        res.append(values[lo] + (values[hi] - values[lo]) * lerp)
    return res


@pytest.mark.parametrize("n_in,n_out", [(4, 3), (2, 4), (5, 8), (7, 2)])
def test_default_resize_is_tf1_resize_images(n_in: int, n_out: int) -> None:
    """TF OD API resizers use tf.compat.v1.image.resize_images: output i samples input i*in/out."""
    from odkit.inputs.resizers import resize_images

    row = [float(v * v) for v in range(n_in)]
    x = torch.tensor(row).view(1, 1, 1, n_in).expand(1, 1, 2, n_in).contiguous()
    got = resize_images(x, (2, n_out))[0, 0, 0].tolist()
    assert got == pytest.approx(_tf_legacy_bilinear_1d(row, n_out), abs=1e-5)
    half = resize_images(x, (2, n_out), half_pixel_centers=True)
    ref = torch.nn.functional.interpolate(x, size=(2, n_out), mode="bilinear", align_corners=False)
    assert torch.equal(half, ref)
    if n_out > n_in:  # upsampling: legacy sampling repeats the last input column, half-pixel does not
        assert got[-1] == row[-1] and got != pytest.approx(half[0, 0, 0].tolist())


def test_legacy_bicubic_and_nearest() -> None:
    from odkit.inputs.resizers import resize_images

    x = torch.arange(16.0).view(1, 1, 4, 4) * 10
    near = resize_images(x, (2, 2), "nearest")
    assert near[0, 0].tolist() == [[0.0, 20.0], [80.0, 100.0]]  # floor(i * 2)
    cubic = resize_images(x, (8, 8), "bicubic")
    assert cubic[0, 0, 0, 0] == 0.0 and cubic[0, 0, 0, 2] == pytest.approx(10.0)  # legacy grid hits input pixels
    assert torch.allclose(resize_images(x, (4, 4), "bicubic"), x)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning", "ignore::FutureWarning")
def test_traced_tf_resize_follows_the_input_size() -> None:
    r = FixedShapeResizer(8, 8)
    traced = torch.jit.trace(r, torch.rand(1, 3, 12, 10) * 255)
    other = torch.rand(1, 3, 21, 17) * 255
    assert torch.allclose(traced(other)[0], r(other)[0], atol=1e-4)


@pytest.mark.parametrize("in_hw,out_hw", [((375, 500), (640, 640)), ((640, 480), (128, 128)), ((17, 29), (20, 30)),
                                          ((9, 7), (9, 7))])
def test_loader_legacy_bilinear_is_bit_identical_to_the_float_forward(in_hw, out_hw) -> None:
    """The data loader's channels-last TF-legacy bilinear path gives exactly forward()'s values, rounded."""
    from odkit.inputs.resizers import resize_bilinear_tf_legacy, resize_bilinear_tf_legacy_hwc

    g = torch.Generator().manual_seed(1)
    hwc = torch.randint(0, 256, (*in_hw, 3), dtype=torch.uint8, generator=g)
    for img in (hwc.permute(2, 0, 1), hwc.permute(2, 0, 1).contiguous()):  # decoder layout and plain CHW
        r = FixedShapeResizer(*out_hw)
        fast, shape = r.resize_uint8(img)
        ref, ref_shapes = r(img[None].float())
        assert torch.equal(fast, ref[0].round().clamp(0, 255).to(torch.uint8))
        assert shape.tolist() == ref_shapes[0].tolist() == [*out_hw, 3]
        if in_hw != out_hw:
            assert fast.permute(1, 2, 0).is_contiguous()  # channels-last memory for the collate
    x = torch.rand(*in_hw, 3, generator=g) * 255
    assert torch.equal(resize_bilinear_tf_legacy_hwc(x, out_hw).permute(2, 0, 1),
                       resize_bilinear_tf_legacy(x.permute(2, 0, 1)[None], out_hw)[0])
