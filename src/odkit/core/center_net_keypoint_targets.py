"""CenterNet keypoint targets (TF OD API `CenterNetKeypointTargetAssigner`, `utils/target_assigner_utils.py`).

Batched over padded groundtruth (docs/ARCHITECTURE.md: ``keypoints`` [B, M, Ktot, 2] normalized (y, x),
``keypoint_visibilities`` [B, M, Ktot], 1-based ``classes``, ``weights``, ``boxes``), channels first, no host
syncs. Coordinates are in the output grid (normalized x ``(out_h, out_w)``, ``out = max(input // stride, 1)``).

- `select_task_keypoints`: the task's keypoint columns (``keypoint_indices``) and their weights
  class mask x box weight x visibility (TF `_preprocess_keypoints_and_weights`; invisible = TF's NaN).
- `keypoint_heatmap_targets`: per keypoint type the max over instances of
  ``weight * exp(-((x - floor(kx))^2 + (y - floor(ky))^2) / (2 sigma^2))`` with
  ``sigma = keypoint_std_dev[k] * (2 floor(radius(box, 0.7)) + 1) / 6``; the valid mask blacks out, per
  type, the boxes of instances whose keypoint weight is < 1e-3 (other classes included, as TF); the number
  of instances per type (int of the summed weights per image, as TF).
- `neighbour_offsets`: TF `get_surrounding_grids` + `compute_floor_offsets_with_indices`: the cells within
  ``peak_radius`` of floor(source), their validity, and target - cell offsets.
"""

from __future__ import annotations

import torch
from torch import Tensor

from odkit.core.center_net_targets import gaussian_sigma, gaussian_splats, splat_max


def select_task_keypoints(keypoints: Tensor, visibilities: Tensor, classes: Tensor, weights: Tensor,
                          class_id: int, keypoint_indices: tuple[int, ...], out_h: int, out_w: int
                          ) -> tuple[Tensor, Tensor]:
    """-> (keypoints [B, M, K, 2] in output-grid pixels, weights [B, M, K]); class_id is 0-based."""
    idx = torch.as_tensor(keypoint_indices, dtype=torch.long, device=keypoints.device)
    kp = keypoints.float().index_select(2, idx)
    vis = visibilities.index_select(2, idx).float()
    in_class = (classes.long() == class_id + 1).float() * weights.float()
    kp_weights = in_class[..., None] * vis
    kp = torch.where(vis[..., None] > 0, kp, torch.zeros_like(kp))  # TF: NaN -> 0
    return kp * kp.new_tensor([out_h, out_w]), kp_weights


def box_centers_sizes(boxes: Tensor, out_h: int, out_w: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Normalized [B, M, 4] boxes -> (yc, xc, h, w) in output-grid pixels."""
    b = boxes.float() * boxes.new_tensor([out_h, out_w, out_h, out_w]).float()
    h, w = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    return b[..., 0] + h / 2.0, b[..., 1] + w / 2.0, h, w


def keypoint_heatmap_targets(kp_abs: Tensor, kp_weights: Tensor, boxes: Tensor, out_h: int, out_w: int,
                             keypoint_std_dev: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """-> heatmap [B, K, out_h, out_w], num_instances [B, K] (int64), valid_mask [B, K, out_h, out_w].

    One image at a time (like TF's per-image loop): the dense splat holds M x K maps of out_h x out_w."""
    heatmaps, valids = [], []
    for i in range(kp_abs.shape[0]):
        h_i, v_i = _image_heatmap(kp_abs[i], kp_weights[i], boxes[i], out_h, out_w, keypoint_std_dev)
        heatmaps.append(h_i)
        valids.append(v_i)
    num_instances = kp_weights.sum(dim=1).to(torch.int64)  # TF: cast(reduce_sum(weights), int32) per image
    return torch.stack(heatmaps), num_instances, torch.stack(valids)


def _image_heatmap(kp_abs: Tensor, kp_weights: Tensor, boxes: Tensor, out_h: int, out_w: int,
                   keypoint_std_dev: Tensor) -> tuple[Tensor, Tensor]:
    m, k, _ = kp_abs.shape
    _, _, bh, bw = box_centers_sizes(boxes, out_h, out_w)
    sigma = keypoint_std_dev.to(kp_abs)[None, :] * gaussian_sigma(bh, bw, 0.7)[:, None]  # [M, K]
    gauss = gaussian_splats(kp_abs[..., 0], kp_abs[..., 1], sigma, out_h, out_w)  # [M, K, h, w]
    gauss = gauss * kp_weights[..., None, None]
    channels = torch.arange(k, device=kp_abs.device).repeat(m, 1)  # [M, K]
    heatmap = splat_max(gauss.reshape(1, m * k, out_h, out_w), channels.reshape(1, m * k), k)[0].detach()
    # blackout: the boxes (output pixels, [ymin, ymax) x [xmin, xmax)) of instances whose keypoint weight < 1e-3
    ob = boxes.float() * boxes.new_tensor([out_h, out_w, out_h, out_w]).float()
    ys = torch.arange(out_h, device=boxes.device, dtype=torch.float32)
    xs = torch.arange(out_w, device=boxes.device, dtype=torch.float32)
    in_y = (ys[None, :] >= ob[:, 0:1]) & (ys[None, :] < ob[:, 2:3])  # [M, h]
    in_x = (xs[None, :] >= ob[:, 1:2]) & (xs[None, :] < ob[:, 3:4])  # [M, w]
    blackout = (kp_weights < 1e-3).float()  # [M, K]
    # pixels covered by a blacked-out box of type k: sum over M of in_y x in_x x blackout (a matmul, no M x K x h x w)
    hit = torch.einsum("mh,mw,mk->khw", in_y.float(), in_x.float(), blackout) > 0
    return heatmap, (~hit).float()


def neighbour_offsets(src_y: Tensor, src_x: Tensor, dst_y: Tensor, dst_x: Tensor, out_h: int, out_w: int,
                      radius: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Cells within ``radius`` of floor(src) -> (y_idx, x_idx int64 [..., N], valid [..., N], offsets
    [..., N, 2] = dst - cell). Invalid cells (outside the grid) get index 0 (TF)."""
    offs = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
            if dy * dy + dx * dx <= radius * radius]
    d = src_y.new_tensor(offs)  # [N, 2]
    y = torch.floor(src_y)[..., None] + d[:, 0]
    x = torch.floor(src_x)[..., None] + d[:, 1]
    valid = (x >= 0) & (x < out_w) & (y >= 0) & (y < out_h)
    y = torch.where(valid, y, torch.zeros_like(y))
    x = torch.where(valid, x, torch.zeros_like(x))
    offsets = torch.stack([dst_y[..., None] - y, dst_x[..., None] - x], dim=-1)
    return y.long(), x.long(), valid, offsets


def gather_channels_at(maps: Tensor, y: Tensor, x: Tensor, channel: Tensor | None) -> Tensor:
    """maps [B, C, H, W] with C = 2 (or 2 * K, channel pairs (y, x) per k) at [B, P] cells -> [B, P, 2]; with
    ``channel`` [B, P] the pair of that keypoint type (TF's [.., K, 2] reshape of the last axis)."""
    bsz, c, _, w = maps.shape
    flat = (y * w + x).long()
    vals = torch.gather(maps.flatten(2), 2, flat[:, None, :].expand(bsz, c, flat.shape[1])).transpose(1, 2)
    if channel is None or c == 2:
        return vals
    pairs = vals.reshape(bsz, flat.shape[1], c // 2, 2)
    return torch.gather(pairs, 2, channel.long()[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
