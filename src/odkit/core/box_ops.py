"""Box helpers on `[..., 4]` tensors in `[ymin, xmin, ymax, xmax]` order (TF OD API `box_list_ops`).

API: `area`, `pairwise_intersection`, `pairwise_iou`, `pairwise_ioa`, `matched_iou`, `matched_giou`,
`to_center_size`, `from_center_size`, `clip_to_window`, `change_coordinate_frame`, `to_normalized`,
`to_absolute`, `yxyx_to_xyxy`, `xyxy_to_yxyx`.

Pairwise functions broadcast over leading batch dims: `[..., N, 4] x [..., M, 4] -> [..., N, M]`.
"""

from __future__ import annotations

import torch
from torch import Tensor


def area(boxes: Tensor) -> Tensor:
    """Box areas `[...]` (no clamping, like TF)."""
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def pairwise_intersection(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection areas `[..., N, M]`."""
    b1 = boxes1.unsqueeze(-2)
    b2 = boxes2.unsqueeze(-3)
    ymin = torch.maximum(b1[..., 0], b2[..., 0])
    xmin = torch.maximum(b1[..., 1], b2[..., 1])
    ymax = torch.minimum(b1[..., 2], b2[..., 2])
    xmax = torch.minimum(b1[..., 3], b2[..., 3])
    return (ymax - ymin).clamp(min=0) * (xmax - xmin).clamp(min=0)


def pairwise_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """IoU `[..., N, M]`; 0 where the intersection is 0 (TF `box_list_ops.iou`)."""
    inter = pairwise_intersection(boxes1, boxes2)
    union = area(boxes1).unsqueeze(-1) + area(boxes2).unsqueeze(-2) - inter
    return torch.where(inter > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def pairwise_ioa(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Intersection over the area of `boxes2` `[..., N, M]` (TF `box_list_ops.ioa`)."""
    inter = pairwise_intersection(boxes1, boxes2)
    return inter / area(boxes2).unsqueeze(-2)


def _matched_intersection_union(boxes1: Tensor, boxes2: Tensor) -> tuple[Tensor, Tensor]:
    """Element-wise intersection and union areas of two `[..., 4]` tensors of the same shape."""
    ymin = torch.maximum(boxes1[..., 0], boxes2[..., 0])
    xmin = torch.maximum(boxes1[..., 1], boxes2[..., 1])
    ymax = torch.minimum(boxes1[..., 2], boxes2[..., 2])
    xmax = torch.minimum(boxes1[..., 3], boxes2[..., 3])
    inter = (ymax - ymin).clamp(min=0) * (xmax - xmin).clamp(min=0)
    return inter, area(boxes1) + area(boxes2) - inter


def matched_iou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Element-wise IoU of two `[..., 4]` tensors of the same shape -> `[...]`."""
    inter, union = _matched_intersection_union(boxes1, boxes2)
    return torch.where(inter > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def matched_giou(boxes1: Tensor, boxes2: Tensor) -> Tensor:
    """Element-wise generalized IoU -> `[...]` in [-1, 1] (TF `ops.giou`)."""
    inter, union = _matched_intersection_union(boxes1, boxes2)
    iou = torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))
    eymin = torch.minimum(boxes1[..., 0], boxes2[..., 0])
    exmin = torch.minimum(boxes1[..., 1], boxes2[..., 1])
    eymax = torch.maximum(boxes1[..., 2], boxes2[..., 2])
    exmax = torch.maximum(boxes1[..., 3], boxes2[..., 3])
    enclose = (eymax - eymin).clamp(min=0) * (exmax - exmin).clamp(min=0)
    giou = iou - torch.where(enclose > 0, (enclose - union) / enclose.clamp(min=1e-12), torch.zeros_like(iou))
    return giou


def to_center_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """`(ycenter, xcenter, height, width)` of `[..., 4]` boxes."""
    ymin, xmin, ymax, xmax = boxes.unbind(-1)
    h = ymax - ymin
    w = xmax - xmin
    return ymin + 0.5 * h, xmin + 0.5 * w, h, w


def from_center_size(yc: Tensor, xc: Tensor, h: Tensor, w: Tensor) -> Tensor:
    """Corner boxes `[..., 4]` from centers and sizes."""
    return torch.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w], dim=-1)


def clip_to_window(boxes: Tensor, window: Tensor) -> Tensor:
    """Clip `[..., N, 4]` boxes to `window` `[4]` or `[..., 4]` (broadcast over N)."""
    if window.dim() > 1:
        window = window.unsqueeze(-2)
    ymin = torch.minimum(torch.maximum(boxes[..., 0], window[..., 0]), window[..., 2])
    xmin = torch.minimum(torch.maximum(boxes[..., 1], window[..., 1]), window[..., 3])
    ymax = torch.minimum(torch.maximum(boxes[..., 2], window[..., 0]), window[..., 2])
    xmax = torch.minimum(torch.maximum(boxes[..., 3], window[..., 1]), window[..., 3])
    return torch.stack([ymin, xmin, ymax, xmax], dim=-1)


def change_coordinate_frame(boxes: Tensor, window: Tensor) -> Tensor:
    """Express `[..., N, 4]` boxes relative to `window` `[4]` or `[..., 4]` (TF semantics)."""
    if window.dim() > 1:
        window = window.unsqueeze(-2)
    h = window[..., 2] - window[..., 0]
    w = window[..., 3] - window[..., 1]
    origin = torch.stack([window[..., 0], window[..., 1], window[..., 0], window[..., 1]], dim=-1)
    scale = torch.stack([h, w, h, w], dim=-1)
    return (boxes - origin) / scale


def to_normalized(boxes: Tensor, height: float | Tensor, width: float | Tensor) -> Tensor:
    """Absolute pixel boxes -> normalized (divide y by height, x by width)."""
    if isinstance(height, Tensor) and height.dim() > 0:
        height = height.reshape(*height.shape, *([1] * (boxes.dim() - height.dim())))
        width = width.reshape(*width.shape, *([1] * (boxes.dim() - width.dim())))  # type: ignore[union-attr]
        scale = torch.cat([height, width, height, width], dim=-1).to(boxes.dtype)
    else:
        scale = boxes.new_tensor([height, width, height, width])
    return boxes / scale


def to_absolute(boxes: Tensor, height: float | Tensor, width: float | Tensor) -> Tensor:
    """Normalized boxes -> absolute pixels (multiply y by height, x by width)."""
    if isinstance(height, Tensor) and height.dim() > 0:
        height = height.reshape(*height.shape, *([1] * (boxes.dim() - height.dim())))
        width = width.reshape(*width.shape, *([1] * (boxes.dim() - width.dim())))  # type: ignore[union-attr]
        scale = torch.cat([height, width, height, width], dim=-1).to(boxes.dtype)
    else:
        scale = boxes.new_tensor([height, width, height, width])
    return boxes * scale


def yxyx_to_xyxy(boxes: Tensor) -> Tensor:
    """`[ymin, xmin, ymax, xmax]` -> `[xmin, ymin, xmax, ymax]` (torchvision order)."""
    return boxes[..., [1, 0, 3, 2]]


def xyxy_to_yxyx(boxes: Tensor) -> Tensor:
    """`[xmin, ymin, xmax, ymax]` -> `[ymin, xmin, ymax, xmax]`."""
    return boxes[..., [1, 0, 3, 2]]
