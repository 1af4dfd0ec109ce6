"""CenterNet targets (TF OD API `core/target_assigner.py` CenterNet assigners, `utils/target_assigner_utils.py`).

All functions are batched over padded groundtruth (padding has weight 0 / class 0) and run on device without
host syncs. Coordinates are in the output grid: normalized boxes times `(out_height, out_width)`, where
`out = max(input // stride, 1)` as TF computes it.

- `max_distance_for_overlap(h, w, min_iou)`: TF's (CenterNet repo's) Gaussian radius, the smallest of the
  three quadratic bounds, using TF's "slightly incorrect" root `(-b + sqrt(b^2 - 4ac)) / 2`.
- `gaussian_sigma(h, w, min_iou)`: `(2 * max(floor(radius), 0) + 1) / 6`.
- `center_heatmap_targets(...) -> [B, C, out_h, out_w]`: per class the max over boxes of
  `weight * exp(-((x - floor(cx))^2 + (y - floor(cy))^2) / (2 sigma^2))`, never below 0.
- `box_size_offset_targets(...)`: per box the integer centre cell (floor of the centre), the (height, width)
  target and the sub-cell offset target (centre - floor(centre)).
- `valid_output_pixels(true_image_shapes, stride, out_h, out_w) -> [B, out_h*out_w]`: 1 where the pixel lies
  inside ceil(true_shape / stride) (TF `get_valid_anchor_weights_in_flattened_image`).
"""

from __future__ import annotations

import torch
from torch import Tensor


def _smallest_positive_root(a: float | Tensor, b: Tensor, c: Tensor) -> Tensor:
    # TF keeps the CenterNet repo's root (-b + sqrt(disc)) / 2 (no division by a); reproduced on purpose.
    discriminant = torch.sqrt(b * b - 4.0 * a * c)
    return (-b + discriminant) / 2.0


def max_distance_for_overlap(height: Tensor, width: Tensor, min_iou: float) -> Tensor:
    """How far apart box corners can lie while keeping `min_iou` (TF `max_distance_for_overlap`)."""
    offset = _smallest_positive_root(1.0, -(height + width), width * height * ((1 - min_iou) / (1 + min_iou)))
    in_gt = _smallest_positive_root(4.0, -2.0 * (height + width), (1 - min_iou) * width * height)
    gt_in = _smallest_positive_root(4.0 * min_iou, (2.0 * min_iou) * (width + height),
                                    (min_iou - 1) * width * height)
    return torch.minimum(torch.minimum(offset, gt_in), in_gt)


def gaussian_sigma(height: Tensor, width: Tensor, min_iou: float) -> Tensor:
    """TF `_compute_std_dev_from_box_size`."""
    radius = max_distance_for_overlap(height, width, min_iou)
    return (2.0 * torch.clamp(torch.floor(radius), min=0.0) + 1.0) / 6.0


def output_size(height: int, width: int, stride: int) -> tuple[int, int]:
    return max(int(height) // stride, 1), max(int(width) // stride, 1)


def _absolute_centers_and_sizes(boxes: Tensor, out_h: int, out_w: int) -> tuple[Tensor, ...]:
    scale = boxes.new_tensor([out_h, out_w, out_h, out_w])
    b = boxes * scale
    ymin, xmin, ymax, xmax = b.unbind(-1)
    h, w = ymax - ymin, xmax - xmin
    return ymin + h / 2.0, xmin + w / 2.0, h, w


def gaussian_splats(y_center: Tensor, x_center: Tensor, sigma: Tensor, out_h: int, out_w: int) -> Tensor:
    """[..., N] centres and sigmas -> [..., N, out_h, out_w] Gaussians around the floored centres."""
    ys = torch.arange(out_h, dtype=y_center.dtype, device=y_center.device)
    xs = torch.arange(out_w, dtype=x_center.dtype, device=x_center.device)
    dy = ys.view(*([1] * y_center.dim()), out_h, 1) - torch.floor(y_center)[..., None, None]
    dx = xs.view(*([1] * x_center.dim()), 1, out_w) - torch.floor(x_center)[..., None, None]
    s = sigma[..., None, None]
    return torch.exp(-(dy * dy + dx * dx) / (2.0 * s * s))


def splat_max(values: Tensor, channels: Tensor, num_channels: int) -> Tensor:
    """Per-instance maps [B, N, H, W] merged into [B, num_channels, H, W] by max over the instances of each
    channel; `channels` [B, N] 0-based (-1 = none). The result is never below 0 (TF `tf.maximum(heatmap, 0)`)."""
    b, n, h, w = values.shape
    out = values.new_zeros(b, num_channels + 1, h * w)
    idx = torch.where(channels >= 0, channels + 1, torch.zeros_like(channels)).long()
    out.scatter_reduce_(1, idx[:, :, None].expand(b, n, h * w), values.reshape(b, n, h * w), reduce="amax",
                        include_self=True)
    return out[:, 1:].reshape(b, num_channels, h, w)


def center_heatmap_targets(boxes: Tensor, classes: Tensor, weights: Tensor, out_h: int, out_w: int,
                           num_classes: int, min_overlap: float) -> Tensor:
    """TF `CenterNetCenterHeatmapTargetAssigner.assign_center_targets_from_boxes`, channels first.

    boxes [B, M, 4] normalized; classes [B, M] 1-based (0 = padding); weights [B, M] -> [B, C, out_h, out_w].
    """
    boxes = boxes.float()
    yc, xc, h, w = _absolute_centers_and_sizes(boxes, out_h, out_w)
    sigma = gaussian_sigma(h, w, min_overlap)
    gauss = gaussian_splats(yc, xc, sigma, out_h, out_w) * weights.float()[..., None, None]
    gauss = torch.where((classes > 0)[..., None, None], gauss, torch.zeros_like(gauss))
    return splat_max(gauss, classes.long() - 1, num_classes).detach()


def box_size_offset_targets(boxes: Tensor, out_h: int, out_w: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """TF `CenterNetBoxTargetAssigner.assign_size_and_offset_targets` (weights are the caller's).

    Returns y_index, x_index (int64 [B, M], clamped into the grid), height_width [B, M, 2] and
    offsets [B, M, 2] in output-grid units.
    """
    yc, xc, h, w = _absolute_centers_and_sizes(boxes.float(), out_h, out_w)
    yf, xf = torch.floor(yc), torch.floor(xc)
    y_idx = yf.long().clamp(0, out_h - 1)
    x_idx = xf.long().clamp(0, out_w - 1)
    return y_idx, x_idx, torch.stack([h, w], dim=-1), torch.stack([yc - yf, xc - xf], dim=-1)


def gather_at(maps: Tensor, y_idx: Tensor, x_idx: Tensor) -> Tensor:
    """maps [B, C, H, W], indices [B, K] -> values [B, K, C] (TF `get_batch_predictions_from_indices`)."""
    b, c, _, w = maps.shape
    flat = (y_idx * w + x_idx).long()
    return torch.gather(maps.flatten(2), 2, flat[:, None, :].expand(b, c, flat.shape[1])).transpose(1, 2)


def valid_output_pixels(true_image_shapes: Tensor, stride: int, out_h: int, out_w: int) -> Tensor:
    """[B, out_h * out_w] float: 1 inside ceil(true_image_shape / stride) (row-major, like TF's flattening)."""
    true = torch.ceil(true_image_shapes[:, :2].float() / stride)
    ys = torch.arange(out_h, device=true.device, dtype=torch.float32)
    xs = torch.arange(out_w, device=true.device, dtype=torch.float32)
    valid = (ys[None, :, None] < true[:, 0, None, None]) & (xs[None, None, :] < true[:, 1, None, None])
    return valid.reshape(true.shape[0], out_h * out_w).float()
