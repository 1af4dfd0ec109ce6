"""Heatmap peak extraction (TF OD API `center_net_meta_arch.top_k_feature_map_locations`), export-safe.

`top_k_peaks(heatmap [B, C, H, W], max_pool_kernel_size, k, per_channel=False)` keeps the values equal
(within 1e-6) to the max over their `kernel x kernel` neighbourhood (TF "SAME" max pool, stride 1; the
max-pool "NMS") and returns the top k over the flattened map in TF's channels-last order
(index = (y * W + x) * C + c), ties lower index first as TF's `top_k`. Returns scores [B, N], y, x and
channel indices (int64 [B, N]); N = k, or k * C with `per_channel` (channel 0's k first). k is clamped to
the map size. Only max_pool2d / topk / integer arithmetic: it exports to ONNX and TorchScript.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

PEAK_EPSILON = 1e-6


def peaks_only(heatmap: Tensor, max_pool_kernel_size: int) -> Tensor:
    """Zero every value that is not the maximum of its neighbourhood."""
    if not max_pool_kernel_size or max_pool_kernel_size == 1:
        return heatmap
    k = int(max_pool_kernel_size)
    before = (k - 1) // 2  # TF "SAME", stride 1: the extra pad goes bottom/right; padding never wins
    pooled = F.max_pool2d(F.pad(heatmap, (before, k - 1 - before, before, k - 1 - before), value=float("-inf")),
                          k, 1)
    return heatmap * ((heatmap - pooled).abs() < PEAK_EPSILON).to(heatmap.dtype)


def row_col_channel_indices(indices: Tensor, num_cols: int, num_channels: int) -> tuple[Tensor, Tensor, Tensor]:
    """Flattened channels-last indices -> (row, col, channel), without a modulo (TF's arithmetic)."""
    pixel = indices // num_channels
    row = pixel // num_cols
    return row, pixel - row * num_cols, indices - pixel * num_channels


def _top_k(values: Tensor, k: int, dim: int) -> tuple[Tensor, Tensor]:
    """Top k along `dim`, ties lower index first (TF `top_k`). Eager uses a stable sort; the exported graphs
    use topk (ONNX TopK and onnxruntime order ties by index too)."""
    if torch.jit.is_tracing() or torch.jit.is_scripting():
        return torch.topk(values, k, dim=dim)
    scores, idx = torch.sort(values, dim=dim, descending=True, stable=True)
    return scores.narrow(dim, 0, k), idx.narrow(dim, 0, k)


def top_k_peaks(heatmap: Tensor, max_pool_kernel_size: int = 3, k: int = 100,
                per_channel: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    b, c, h, w = heatmap.shape
    peaks = peaks_only(heatmap, max_pool_kernel_size)
    if per_channel:
        kk = min(int(k), h * w)
        scores, flat = _top_k(peaks.reshape(b, c, h * w), kk, 2)
        channel = torch.arange(c, device=heatmap.device).view(1, c, 1)
        flat = flat * c + channel
        scores, flat = scores.reshape(b, c * kk), flat.reshape(b, c * kk)
    else:
        flat_map = peaks.permute(0, 2, 3, 1).reshape(b, h * w * c)
        scores, flat = _top_k(flat_map, min(int(k), h * w * c), 1)
    y, x, ch = row_col_channel_indices(flat, w, c)
    return scores, y, x, ch
