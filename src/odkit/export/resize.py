"""Resizers the tracer can follow for any input size (ONNX / TorchScript export).

A fixed_shape_resizer traces as is (its output size is a constant). keep_aspect_ratio_resizer with
pad_to_max_dimension computes its target size from the input shape, so its size maths is rewritten
from the traced shape with odkit.inputs.resizers.resize_to_range_hw (the data loader's own arithmetic). Resizers
whose output size depends on the input (no padding to a fixed size) are refused.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.errors import UnsupportedError
from odkit.inputs.resizers import (
    FixedShapeResizer,
    KeepAspectRatioResizer,
    resize_images,
    resize_to_range_hw,
    to_grayscale3,
)


class TraceableKeepAspectRatio(nn.Module):
    """keep_aspect_ratio_resizer + pad_to_max_dimension with the target size computed as tensors."""

    def __init__(self, resizer: nn.Module) -> None:
        super().__init__()
        self.min_dimension = int(resizer.min_dimension)
        self.max_dimension = int(resizer.max_dimension)
        self.method = resizer.method
        self.half_pixel_centers = bool(getattr(resizer, "half_pixel_centers", False))
        self.grayscale = bool(resizer.grayscale)
        self.register_buffer("pad", torch.tensor(resizer.pad_value(), dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    @property
    def fixed_output_size(self) -> tuple[int, int]:
        """Every image is padded to max_dimension x max_dimension (the network input size is fixed)."""
        return self.max_dimension, self.max_dimension

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        images = images.to(torch.float32)
        hw = torch._shape_as_tensor(images)[2:].to(torch.float32)
        size = resize_to_range_hw(hw, self.min_dimension, self.max_dimension).to(torch.int64)
        if torch.jit.is_tracing():
            out_size = (size[0], size[1])
        else:
            out_size = (int(size[0]), int(size[1]))
        out = resize_images(images, out_size, self.method, self.half_pixel_centers)
        if self.grayscale:
            out = to_grayscale3(out)
        b, c, h, w = out.shape
        m = self.max_dimension
        out = torch.cat([out, self.pad.expand(b, c, m - h, w)], dim=2)
        out = torch.cat([out, self.pad.expand(b, c, m, m - w)], dim=3)
        shapes = torch.cat([size, torch.full_like(size[:1], 3)]).unsqueeze(0).expand(b, 3)
        return out, shapes


def export_resizer(resizer: nn.Module) -> nn.Module:
    """A module equivalent to ``resizer`` that traces correctly for every input size."""
    if isinstance(resizer, KeepAspectRatioResizer):
        if resizer.pad_to_max_dimension:
            return TraceableKeepAspectRatio(resizer)
        raise UnsupportedError(
            "export needs a fixed model input size, but keep_aspect_ratio_resizer without pad_to_max_dimension "
            "gives each image its own size",
            hint="export with --config_override 'model { faster_rcnn { image_resizer { keep_aspect_ratio_resizer "
            "{ pad_to_max_dimension: true } } } }' (or ssd)",
        )
    if isinstance(resizer, FixedShapeResizer) or getattr(resizer, "fixed_output_size", None) is not None:
        return resizer
    raise UnsupportedError(
        f"export needs a fixed model input size; {type(resizer).__name__} gives each image its own size",
        hint="use fixed_shape_resizer or keep_aspect_ratio_resizer with pad_to_max_dimension: true",
    )
