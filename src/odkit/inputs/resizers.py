"""Image resizers from `model.<arch>.image_resizer` (TF OD API image_resizer_builder semantics).

Torch ops only (index_select, F.interpolate, F.pad), so the exporter can put the same module in the graph.
`forward(float [B,3,H,W]) -> (resized [B,3,H',W'], true_image_shapes int64 [B,3])`.

Resampling reproduces what the TF OD API computes by default: its resizers call
`tf.compat.v1.image.resize_images` (align_corners=False, half_pixel_centers=False), which samples output
pixel i at input coordinate ``i * in/out`` ("legacy"/asymmetric; bilinear and bicubic reimplemented here
with TF's float32 arithmetic, nearest is torch's own legacy "nearest"). ``half_pixel_centers=True`` (an
explicit option of `resize_images`, the resizers and `build_image_resizer`) samples at ``(i + 0.5) * in/out
- 0.5`` instead, as TF2's `tf.image.resize` and torch's `align_corners=False` do (odkit's behaviour before
TF parity). `area` uses torch's adaptive average pooling in both modes (not TF's resize_area).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from odkit.errors import ConfigError, UnsupportedError

GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # tf.image.rgb_to_grayscale


def _legacy_source(in_size, out_size, device) -> torch.Tensor:
    """TF LegacyScaler: float32 ``i * (in / out)`` for i in [0, out) (in/out may be 0-d tensors when traced)."""
    if isinstance(in_size, torch.Tensor) or isinstance(out_size, torch.Tensor):
        scale = torch.as_tensor(in_size, device=device).to(torch.float32) / torch.as_tensor(
            out_size, device=device).to(torch.float32)
    else:
        scale = torch.tensor(np.float32(in_size) / np.float32(out_size), device=device)
    return torch.arange(out_size, device=device).to(torch.float32) * scale


def _bilinear_axis(in_size, out_size, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """TF `compute_interpolation_weights`: lower/upper indices and the lerp weight per output index
    (read-only tensors: cached per size pair on the CPU, where the data loader asks for the same few)."""
    if isinstance(in_size, int) and isinstance(out_size, int) and torch.device(device).type == "cpu":
        return _bilinear_axis_cpu(in_size, out_size)
    return _compute_bilinear_axis(in_size, out_size, device)


@functools.lru_cache(maxsize=1024)
def _bilinear_axis_cpu(in_size: int, out_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return _compute_bilinear_axis(in_size, out_size, "cpu")


def _compute_bilinear_axis(in_size, out_size, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    src = _legacy_source(in_size, out_size, device)
    floor = torch.floor(src)
    lower = floor.to(torch.int64).clamp(min=0)
    upper = torch.minimum(torch.ceil(src).to(torch.int64), torch.as_tensor(in_size, device=device) - 1)
    return lower, upper, src - floor


def _input_hw(images: torch.Tensor):
    """(H, W) of images: ints eagerly, 0-d tensors while tracing (so exported graphs take any input size)."""
    if torch.jit.is_tracing():
        hw = torch._shape_as_tensor(images)[-2:]
        return hw[0], hw[1]
    return images.shape[-2], images.shape[-1]


def resize_bilinear_tf_legacy(images: torch.Tensor, size) -> torch.Tensor:
    """`tf.compat.v1.image.resize_bilinear(align_corners=False, half_pixel_centers=False)` on float [B,C,H,W],
    with TF's float32 order of operations (top/bottom lerp along x, then along y).

    Gathers run on a channels-last view, so each index along W moves a whole pixel (C values): in an exported
    graph onnxruntime's Gather along the last axis of NCHW moved one float per index (a 600x400 -> 320x320
    resize: gathers 3.9 -> 1.5 ms); the values are the same. Returns [B,C,H',W'] with channels-last strides."""
    h_in, w_in = _input_hw(images)
    y0, y1, ly = _bilinear_axis(h_in, size[0], images.device)
    x0, x1, lx = _bilinear_axis(w_in, size[1], images.device)
    hwc = images.permute(0, 2, 3, 1)  # [B, H, W, C]
    top = hwc.index_select(1, y0)
    bottom = hwc.index_select(1, y1)
    lx = lx.to(images.dtype).unsqueeze(-1).repeat(1, int(images.shape[1]))  # [W', C]: no size-1 broadcast
    tl, tr = top.index_select(2, x0), top.index_select(2, x1)
    bl, br = bottom.index_select(2, x0), bottom.index_select(2, x1)
    t = tl + (tr - tl) * lx
    b = bl + (br - bl) * lx
    out = t + (b - t) * ly.to(images.dtype).view(-1, 1, 1)
    return out.permute(0, 3, 1, 2)


def resize_bilinear_tf_legacy_hwc(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """`resize_bilinear_tf_legacy` for one channels-last image (any dtype [H, W, C]) -> float32 [H', W', C],
    bit-identical to it (the same float32 operations on the same values, in TF's order).

    The top/bottom lerp along x is computed once per *source* row that some output row reads (TF computes it
    per output row: the same values, repeated), and every gather moves whole rows or runs along a flat
    [rows, W * C] view, which is what makes this the data loader's fast path.
    """
    h_in, w_in, c = int(image.shape[0]), int(image.shape[1]), int(image.shape[2])
    h_out, w_out = int(size[0]), int(size[1])
    y0, y1, ly = _bilinear_axis(h_in, h_out, image.device)
    x0, x1, lx = _bilinear_axis(w_in, w_out, image.device)
    rows, inverse = torch.unique(torch.cat([y0, y1]), sorted=True, return_inverse=True)
    src = image.index_select(0, rows).to(torch.float32).view(len(rows), w_in * c)
    chan = torch.arange(c, device=image.device)
    left = src.index_select(1, (x0.unsqueeze(1) * c + chan).view(-1))
    right = src.index_select(1, (x1.unsqueeze(1) * c + chan).view(-1))
    across = right.sub_(left).mul_(lx.repeat_interleave(c).unsqueeze(0)).add_(left)  # tl + (tr - tl) * lx
    top = across.index_select(0, inverse[:h_out])
    out = across.index_select(0, inverse[h_out:]).sub_(top).mul_(ly.unsqueeze(1)).add_(top)  # t + (b - t) * ly
    return out.view(h_out, w_out, c)


def _cubic_weights(t: torch.Tensor, a: float = -0.75) -> list[torch.Tensor]:
    """Keys cubic coefficients for taps -1, 0, 1, 2 at fractional offset t (TF/torch use a = -0.75)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return [far(t + 1), near(t), near(1 - t), far(2 - t)]


def resize_bicubic_tf_legacy(images: torch.Tensor, size) -> torch.Tensor:
    """`tf.compat.v1.image.resize_bicubic(align_corners=False, half_pixel_centers=False)` on float [B,C,H,W]
    (legacy scaler, taps clamped to the border)."""
    out = images
    for dim, out_size in ((-2, size[0]), (-1, size[1])):
        in_size = _input_hw(out)[dim]
        src = _legacy_source(in_size, out_size, out.device)
        base = torch.floor(src)
        weights = _cubic_weights(src - base)
        base = base.to(torch.int64)
        acc = None
        for k, wk in zip((-1, 0, 1, 2), weights):
            idx = torch.minimum((base + k).clamp(min=0), torch.as_tensor(in_size, device=out.device) - 1)
            shape = [1] * out.dim()
            shape[dim] = -1
            term = out.index_select(dim, idx) * wk.to(out.dtype).view(shape)
            acc = term if acc is None else acc + term
        out = acc
    return out


def resize_images(images: torch.Tensor, size: tuple[int, int], method: str = "bilinear",
                  half_pixel_centers: bool = False) -> torch.Tensor:
    """Resize float [B,C,H,W] to size=(h, w). method: bilinear, nearest, bicubic, area.

    Default: TF1 `resize_images` sampling (what the TF OD API resizers compute); ``half_pixel_centers=True``:
    half-pixel centres (TF2 `tf.image.resize`, torch `align_corners=False`).
    """
    traced = any(isinstance(v, torch.Tensor) for v in size)
    h, w = (size[0], size[1]) if traced else (int(size[0]), int(size[1]))
    if not traced and not torch.jit.is_tracing() and images.shape[-2] == h and images.shape[-1] == w:
        return images
    if method == "bilinear":
        if half_pixel_centers:
            return F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False)
        return resize_bilinear_tf_legacy(images, (h, w))
    if method == "bicubic":
        if half_pixel_centers:
            out = F.interpolate(images, size=(h, w), mode="bicubic", align_corners=False)
        else:
            out = resize_bicubic_tf_legacy(images, (h, w))
        return out.clamp(0, 255)
    if method == "nearest":
        if half_pixel_centers:
            return F.interpolate(images, size=(h, w), mode="nearest-exact")
        return F.interpolate(images, size=(h, w), mode="nearest")  # floor(i * in/out): TF legacy nearest
    if method == "area":
        return F.interpolate(images, size=(h, w), mode="area")
    raise ValueError(f"unknown resize method {method!r}")


def to_grayscale3(images: torch.Tensor) -> torch.Tensor:
    """RGB [B,3,H,W] -> gray replicated to 3 channels (float)."""
    wts = torch.tensor(GRAY_WEIGHTS, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    gray = (images * wts).sum(dim=1, keepdim=True)
    return gray.expand(-1, 3, -1, -1).contiguous()


def resize_to_range_hw(hw: torch.Tensor, min_dimension: int, max_dimension: int) -> torch.Tensor:
    """New float32 (h, w) of TF preprocessor.resize_to_range for a float32 [2] (h, w): float32 maths, round half
    to even, tensor ops only (the exported graph traces it for any input size: odkit.export.resize).

    The scale is a float32 division, as TF's ``min_dimension / min(h, w)``: ``int / tensor`` would be computed as
    ``int * reciprocal(tensor)`` by torch, which rounds differently (e.g. 300 / 120 -> 2.5000002)."""
    large = torch.round(hw * (hw.new_full((), float(min_dimension)) / hw.min()))
    if not max_dimension:
        return large
    small = torch.round(hw * (hw.new_full((), float(max_dimension)) / hw.max()))
    return torch.where(large.max() > max_dimension, small, large)


def resize_to_range_size(height: int, width: int, min_dimension: int, max_dimension: int) -> tuple[int, int]:
    """New (h, w) of TF preprocessor.resize_to_range (resize_to_range_hw on Python ints)."""
    size = resize_to_range_hw(torch.tensor([height, width], dtype=torch.float32), min_dimension, max_dimension)
    return int(size[0]), int(size[1])


class ImageResizer(nn.Module):
    """Base: resizes a batch of same-sized float images; reports the valid (unpadded) shapes."""

    def __init__(self, method: str = "bilinear", grayscale: bool = False, half_pixel_centers: bool = False) -> None:
        super().__init__()
        self.method = method
        self.grayscale = grayscale
        self.half_pixel_centers = bool(half_pixel_centers)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """Output frame size for a resized (height, width)."""
        return height, width

    pad_pixels: list[float] | None = None  # set by build_image_resizer(pad_to_pixels=...)

    def pad_value(self) -> list[float]:
        """Pixel value of the padding (raw [0, 255] space)."""
        return list(self.pad_pixels) if self.pad_pixels is not None else self.config_pad_value()

    def config_pad_value(self) -> list[float]:
        """The padding value as the config states it."""
        return [0.0, 0.0, 0.0]

    @property
    def fixed_output_size(self) -> tuple[int, int] | None:
        return None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(torch.float32)
        b, _, h, w = images.shape
        th, tw = self.target_size(int(h), int(w))
        out = resize_images(images, (th, tw), self.method, self.half_pixel_centers)
        if self.grayscale:
            out = to_grayscale3(out)
        ph, pw = self.padded_size(th, tw)
        if (ph, pw) != (th, tw):
            out = _pad_bottom_right(out, ph, pw, self.pad_value())
        shapes = torch.tensor([[th, tw, 3]], dtype=torch.int64).expand(b, 3).clone()
        return out, shapes


    def resize_uint8(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Data-loader path for one uint8 [3,H,W] image -> (uint8 [3,H',W'], true shape [3]).

        Resamples like forward() (TF sampling by default) and rounds to uint8: the same values as
        ``forward`` rounded, computed channels-last. The result is a [3,H',W'] view of channels-last memory
        ([H',W',3] contiguous) except on the generic path (grayscale, bicubic, area, legacy nearest), which
        returns a contiguous tensor; ``collate_examples`` batches either into channels-last memory. Only the
        half-pixel bilinear / nearest option resizes uint8 directly (within 1 grey level of the float path).
        """
        h, w = int(image.shape[-2]), int(image.shape[-1])
        th, tw = self.target_size(h, w)
        hwc = image.dtype == torch.uint8 and not self.grayscale
        if hwc and self.method == "bilinear" and not self.half_pixel_centers:
            out = image.permute(1, 2, 0)  # [H, W, 3] (a free view of the decoder's channels-last memory)
            if (th, tw) != (h, w):
                # lerps of values in [0, 255] stay in [0, 255] (float rounding is monotonic): no clamp needed
                # (numpy's float32 -> uint8 cast is vectorised, ATen's is not: 0.08 vs 0.32 ms at 640x640x3;
                # the values are whole numbers in [0, 255] by then, so both give the same bytes)
                out = torch.from_numpy(resize_bilinear_tf_legacy_hwc(out, (th, tw)).round_().numpy().astype(np.uint8))
        elif hwc and self.half_pixel_centers and self.method in ("bilinear", "nearest"):
            out = image.permute(1, 2, 0)
            if (th, tw) != (h, w):
                x = image[None].contiguous(memory_format=torch.channels_last)
                kw = {"align_corners": False} if self.method == "bilinear" else {}
                mode = self.method if self.method == "bilinear" else "nearest-exact"
                out = F.interpolate(x, size=(th, tw), mode=mode, **kw)[0].permute(1, 2, 0)
        else:
            res, shapes = self.forward(image[None].to(torch.float32))
            return res[0].round().clamp_(0, 255).to(torch.uint8), shapes[0]
        ph, pw = self.padded_size(th, tw)
        if (ph, pw) != (th, tw):
            fill = torch.tensor(self.pad_value()).round().clamp(0, 255).to(torch.uint8)
            canvas = fill.expand(ph, pw, 3).clone()
            canvas[:th, :tw] = out
            out = canvas
        return out.permute(2, 0, 1), torch.tensor([th, tw, 3], dtype=torch.int64)


def _pad_bottom_right(images: torch.Tensor, height: int, width: int, value: list[float]) -> torch.Tensor:
    b, c, h, w = images.shape
    vals = torch.tensor(value, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    out = vals.expand(b, c, height, width).clone()
    out[:, :, :h, :w] = images
    return out


class FixedShapeResizer(ImageResizer):
    def __init__(self, height: int, width: int, method: str = "bilinear", grayscale: bool = False,
                 half_pixel_centers: bool = False) -> None:
        super().__init__(method, grayscale, half_pixel_centers)
        self.height, self.width = int(height), int(width)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return self.height, self.width

    @property
    def fixed_output_size(self) -> tuple[int, int] | None:
        return self.height, self.width


class KeepAspectRatioResizer(ImageResizer):
    def __init__(self, min_dimension: int = 600, max_dimension: int = 1024, method: str = "bilinear",
                 pad_to_max_dimension: bool = False, per_channel_pad_value: list[float] | None = None,
                 grayscale: bool = False, half_pixel_centers: bool = False) -> None:
        super().__init__(method, grayscale, half_pixel_centers)
        if min_dimension > max_dimension:
            raise ConfigError(f"keep_aspect_ratio_resizer: min_dimension {min_dimension} > max_dimension "
                              f"{max_dimension}", hint="set min_dimension <= max_dimension")
        self.min_dimension, self.max_dimension = int(min_dimension), int(max_dimension)
        self.pad_to_max_dimension = pad_to_max_dimension
        self.per_channel_pad_value = list(per_channel_pad_value or [0.0, 0.0, 0.0])

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        return resize_to_range_size(height, width, self.min_dimension, self.max_dimension)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        if self.pad_to_max_dimension:
            return self.max_dimension, self.max_dimension
        return height, width

    def config_pad_value(self) -> list[float]:
        v = self.per_channel_pad_value
        return v if len(v) == 3 else [v[0]] * 3

    @property
    def fixed_output_size(self) -> tuple[int, int] | None:
        return (self.max_dimension, self.max_dimension) if self.pad_to_max_dimension else None


class IdentityResizer(ImageResizer):
    pass


class ConditionalShapeResizer(ImageResizer):
    """GREATER: shrink so the max side is size_threshold; SMALLER: grow so the min side is it."""

    def __init__(self, condition: str, size_threshold: int = 300, method: str = "bilinear",
                 grayscale: bool = False, half_pixel_centers: bool = False) -> None:
        super().__init__(method, grayscale, half_pixel_centers)
        self.condition, self.size_threshold = condition, int(size_threshold)

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        h, w = np.float32(height), np.float32(width)
        if self.condition == "GREATER":
            dim = np.minimum(np.maximum(h, w), np.float32(self.size_threshold))
            ratio = dim / np.maximum(h, w)
        else:
            dim = np.maximum(np.minimum(h, w), np.float32(self.size_threshold))
            ratio = dim / np.minimum(h, w)
        return int(h * ratio), int(w * ratio)


class PadToMultipleResizer(ImageResizer):
    def __init__(self, multiple: int = 1) -> None:
        super().__init__()
        self.multiple = max(1, int(multiple))

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        m = self.multiple
        return -(-height // m) * m, -(-width // m) * m


_METHODS = {0: "bilinear", 1: "nearest", 2: "bicubic", 3: "area"}  # image_resizer.proto ResizeType


def resize_method_name(value: int) -> str:
    if value not in _METHODS:
        raise UnsupportedError(f"image_resizer resize_method {value} is not supported",
                               hint="use BILINEAR, NEAREST_NEIGHBOR, BICUBIC or AREA")
    return _METHODS[value]


def build_image_resizer(config: Any, pad_to_pixels: Any = None, half_pixel_centers: bool = False) -> ImageResizer:
    """ImageResizer proto -> ImageResizer module (TF1 `resize_images` sampling unless ``half_pixel_centers``).

    `pad_to_pixels(values) -> values` maps the config's pad value to raw pixels: the TF OD API SSD pads after
    the feature extractor's normalisation (`SSDMetaArch.preprocess` normalises, then resizes), so its pad value
    is in normalised units (see `odkit.models.ssd_feature_extractors.normalized_to_pixels`).
    """
    resizer = _build_image_resizer(config, half_pixel_centers)
    if pad_to_pixels is not None:
        resizer.pad_pixels = [float(v) for v in pad_to_pixels(resizer.config_pad_value())]
    return resizer


def _build_image_resizer(config: Any, half_pixel_centers: bool = False) -> ImageResizer:
    kind = config.WhichOneof("image_resizer_oneof")
    if kind == "fixed_shape_resizer":
        c = config.fixed_shape_resizer
        return FixedShapeResizer(c.height, c.width, resize_method_name(c.resize_method), c.convert_to_grayscale,
                                 half_pixel_centers=half_pixel_centers)
    if kind == "keep_aspect_ratio_resizer":
        c = config.keep_aspect_ratio_resizer
        return KeepAspectRatioResizer(c.min_dimension, c.max_dimension, resize_method_name(c.resize_method),
                                      c.pad_to_max_dimension, list(c.per_channel_pad_value),
                                      c.convert_to_grayscale, half_pixel_centers=half_pixel_centers)
    if kind == "identity_resizer":
        return IdentityResizer()
    if kind == "conditional_shape_resizer":
        c = config.conditional_shape_resizer
        cond = {1: "GREATER", 2: "SMALLER"}.get(c.condition)
        if cond is None:
            raise ConfigError("conditional_shape_resizer.condition must be GREATER or SMALLER")
        return ConditionalShapeResizer(cond, c.size_threshold, resize_method_name(c.resize_method),
                                       c.convert_to_grayscale, half_pixel_centers=half_pixel_centers)
    if kind == "pad_to_multiple_resizer":
        return PadToMultipleResizer(config.pad_to_multiple_resizer.multiple)
    if kind is None:
        raise ConfigError("image_resizer is empty", hint="set e.g. fixed_shape_resizer { height: 320 width: 320 }")
    raise UnsupportedError(f"image_resizer {kind} is not supported")
