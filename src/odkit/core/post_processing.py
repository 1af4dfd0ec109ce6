"""Batched multiclass NMS and score converters (TF OD API `core/post_processing.py`).

`batch_multiclass_non_max_suppression(boxes [B, A, q, 4] (q = 1 or C), scores [B, A, C], score_thresh,
iou_thresh, max_size_per_class, max_total_size, clip_window=None ([4] or [B, 4]),
change_coordinate_frame=False, use_class_agnostic_nms=False, soft_nms_sigma=0.0, pre_nms_top_k=None)
-> NmsResult(boxes [B, K, 4], scores [B, K], classes [B, K] float 0-based, num_detections int64 [B],
anchor_indices int64 [B, K])` with K = max_total_size, zero padded after num_detections, sorted by score.

Per image and class: keep scores > score_thresh, greedy NMS (torchvision `batched_nms`, exportable) or
Gaussian soft-NMS (`soft_nms_sigma > 0`: score *= exp(-0.5 * iou^2 / sigma), TF's kernel) keeping at most
max_size_per_class; then (TF order) clip to clip_window and drop zero-area boxes, optionally express the
boxes in the clip window's frame, and keep the max_total_size best over all classes.
Class-agnostic NMS (TF `max_classes_per_detection=1`): one NMS over boxes scored by their best class,
at most max_total_size. `pre_nms_top_k` (per image and class) bounds the work; None = exact TF result
(candidate prefix grown until provably exact). `BatchNonMaxSuppression(...)` holds the settings:
`nms(boxes, scores, clip_window=None) -> NmsResult` (what `post_processing_builder.build` returns).

`ScoreConverter(kind='IDENTITY'|'SIGMOID'|'SOFTMAX', logit_scale=1.0)`: nn.Module, `logits / logit_scale`
then the function (softmax over the last dim).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torchvision.ops import batched_nms

from odkit.core import box_ops, nms_export


class NmsResult(NamedTuple):
    boxes: Tensor
    scores: Tensor
    classes: Tensor
    num_detections: Tensor
    anchor_indices: Tensor


class ScoreConverter(nn.Module):
    KINDS = ("IDENTITY", "SIGMOID", "SOFTMAX")

    def __init__(self, kind: str = "IDENTITY", logit_scale: float = 1.0) -> None:
        super().__init__()
        kind = kind.upper()
        if kind not in self.KINDS:
            raise ValueError(f"unknown score converter {kind!r}")
        if logit_scale == 0:
            raise ValueError("logit_scale must be non-zero")
        self.kind = kind
        self.logit_scale = float(logit_scale)

    def forward(self, logits: Tensor) -> Tensor:
        if self.logit_scale != 1.0:
            logits = logits / self.logit_scale
        if self.kind == "SIGMOID":
            return torch.sigmoid(logits)
        if self.kind == "SOFTMAX":
            return torch.softmax(logits, dim=-1)
        return logits


def _soft_nms(
    boxes: Tensor, scores: Tensor, valid: Tensor, sigma: float, score_thresh: float, max_out: int
) -> tuple[Tensor, Tensor]:
    """Gaussian soft-NMS on groups `boxes [G, k, 4]`, `scores [G, k]` -> (kept [G, k] bool, new scores)."""
    g, k = scores.shape
    neg_inf = torch.finfo(scores.dtype).min
    work = torch.where(valid, scores, torch.full_like(scores, neg_inf))
    kept = torch.zeros_like(valid)
    out_scores = scores.clone()
    rows = torch.arange(g, device=scores.device)
    scale = -0.5 / sigma
    for _ in range(min(max_out, k)):  # selection rounds, vectorised over groups
        best, idx = work.max(dim=1)
        ok = best > score_thresh
        kept[rows, idx] = kept[rows, idx] | ok
        out_scores[rows, idx] = torch.where(ok, best, out_scores[rows, idx])
        iou = box_ops.matched_iou(boxes[rows, idx].unsqueeze(1), boxes)  # [G, k]
        work = torch.where(ok.unsqueeze(1), work * torch.exp(scale * iou * iou), work)
        work[rows, idx] = neg_inf
        work = torch.where(work > score_thresh, work, torch.full_like(work, neg_inf))
    return kept, out_scores


def greedy_nms_top_n(
    boxes: Tensor, scores: Tensor, max_output: int, iou_thresh: float, always_loop: bool = False
) -> tuple[Tensor, Tensor]:
    """Greedy NMS that stops after `max_output` picks, batched: `boxes [B, N, 4]`, `scores [B, N]`.

    Returns `(indices [B, max_output] int64, valid [B, max_output] bool)` in pick order (descending
    score), like `tf.image.non_max_suppression(max_output_size=...)`. Small max_output: max_output
    vectorised rounds over [B, N]; large: exact NMS on a growing top-scored prefix (one host sync), unless
    `always_loop` (no host sync; used by the Faster R-CNN first stage). Scores equal to the float32 minimum
    mark entries that must not be picked.
    """
    b, n = scores.shape
    if torch.onnx.is_in_onnx_export():  # one ONNX NonMaxSuppression (exact; see odkit.core.nms_export)
        return nms_export.single_class_top_n(boxes.detach(), scores.detach().float(), max_output, iou_thresh)
    if max_output > 128 and n > 0 and not always_loop:
        return _nms_top_n_prefix(boxes, scores, max_output, iou_thresh)
    neg_inf = torch.finfo(torch.float32).min
    work = scores.detach().float().clone()
    rows = torch.arange(b, device=scores.device)
    idx_out = torch.zeros((b, max_output), dtype=torch.int64, device=scores.device)
    ok_out = torch.zeros((b, max_output), dtype=torch.bool, device=scores.device)
    if n == 0:
        return idx_out, ok_out
    boxes = boxes.detach()
    for i in range(max_output):
        best, idx = work.max(dim=1)
        ok = best > neg_inf
        idx_out[:, i] = idx
        ok_out[:, i] = ok
        picked = boxes[rows, idx].unsqueeze(1)  # [B, 1, 4]
        iou = box_ops.matched_iou(picked, boxes)  # [B, N]
        work = torch.where(ok.unsqueeze(1) & (iou > iou_thresh), torch.full_like(work, neg_inf), work)
        work[rows, idx] = neg_inf
    return idx_out, ok_out


def _nms_top_n_prefix(
    boxes: Tensor, scores: Tensor, max_output: int, iou_thresh: float
) -> tuple[Tensor, Tensor]:
    """Greedy NMS restricted to the top-T scores; T grows until max_output picks (exact: a pick only
    depends on higher-scored boxes)."""
    b, n = scores.shape
    boxes = boxes.detach()
    scores = scores.detach().float()
    t = min(n, max(4 * max_output, 1024))
    img = torch.arange(b, device=scores.device)
    while True:
        top_s, top_i = scores.topk(t, dim=1)
        top_b = torch.gather(boxes, 1, top_i.unsqueeze(-1).expand(b, t, 4))
        keep = batched_nms(
            box_ops.yxyx_to_xyxy(top_b.reshape(-1, 4)).float(),
            top_s.reshape(-1),
            img.repeat_interleave(t),
            float(iou_thresh),
        )
        kept = torch.zeros(b * t, dtype=torch.bool, device=scores.device)
        kept[keep] = True
        kept = kept.view(b, t) & (top_s > torch.finfo(torch.float32).min)
        if t == n or bool((kept.sum(1) >= max_output).all()):
            break
        t = min(n, 4 * t)
    pos = torch.arange(t, device=scores.device).expand(b, t)
    order = torch.where(kept, pos, pos + t).argsort(dim=1)
    m = min(max_output, t)
    idx_out = torch.gather(top_i, 1, order[:, :m])
    ok_out = torch.gather(kept, 1, order[:, :m])
    if m < max_output:
        idx_out = torch.nn.functional.pad(idx_out, (0, max_output - m))
        ok_out = torch.nn.functional.pad(ok_out, (0, max_output - m))
    return idx_out, ok_out


class BatchNonMaxSuppression:
    """Configured `batch_multiclass_non_max_suppression`: `nms(boxes, scores, clip_window=None) -> NmsResult`."""

    def __init__(
        self,
        score_thresh: float = 0.0,
        iou_thresh: float = 0.6,
        max_size_per_class: int = 100,
        max_total_size: int = 100,
        change_coordinate_frame: bool = True,
        use_class_agnostic_nms: bool = False,
        soft_nms_sigma: float = 0.0,
        pre_nms_top_k: int | None = None,
    ) -> None:
        self.score_thresh = float(score_thresh)
        self.iou_thresh = float(iou_thresh)
        self.max_size_per_class = int(max_size_per_class)
        self.max_total_size = int(max_total_size)
        self.change_coordinate_frame = bool(change_coordinate_frame)
        self.use_class_agnostic_nms = bool(use_class_agnostic_nms)
        self.soft_nms_sigma = float(soft_nms_sigma)
        self.pre_nms_top_k = pre_nms_top_k

    def __call__(self, boxes: Tensor, scores: Tensor, clip_window: Tensor | None = None) -> NmsResult:
        return batch_multiclass_non_max_suppression(
            boxes,
            scores,
            self.score_thresh,
            self.iou_thresh,
            self.max_size_per_class,
            self.max_total_size,
            clip_window=clip_window,
            change_coordinate_frame=self.change_coordinate_frame,
            use_class_agnostic_nms=self.use_class_agnostic_nms,
            soft_nms_sigma=self.soft_nms_sigma,
            pre_nms_top_k=self.pre_nms_top_k,
        )


def _tracing() -> bool:
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export())


def _candidates_nms(
    scores_t: Tensor,
    flat_boxes: Tensor,
    k: int,
    score_thresh: float,
    iou_thresh: float,
    per_class: int,
    soft_nms_sigma: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """NMS on the top-k candidates of each (image, class): returns kept, scores, anchor idx, boxes [B, C, k]."""
    b, c, a = scores_t.shape
    if k < a:
        cand_scores, cand_idx = scores_t.topk(k, dim=2)
    else:
        cand_scores, cand_idx = scores_t.sort(dim=2, descending=True)
    cand_boxes = torch.gather(flat_boxes, 2, cand_idx.unsqueeze(-1).expand(b, c, k, 4))  # [B, C, k, 4]
    valid = cand_scores > score_thresh
    if soft_nms_sigma > 0:
        kept, new_scores = _soft_nms(
            cand_boxes.reshape(b * c, k, 4),
            cand_scores.reshape(b * c, k),
            valid.reshape(b * c, k),
            float(soft_nms_sigma),
            float(score_thresh),
            per_class,
        )
        return kept.view(b, c, k), new_scores.view(b, c, k), cand_idx, cand_boxes
    pos = torch.nonzero(valid.reshape(-1)).squeeze(1)
    group = torch.arange(b * c, device=scores_t.device).repeat_interleave(k)[pos]
    # traced for TorchScript: NMS class by class (batched_nms would run one NMS over every candidate)
    nms_boxes = box_ops.yxyx_to_xyxy(cand_boxes.reshape(-1, 4)[pos]).float()
    if torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():  # candidates are sorted in each group
        sel = nms_export.grouped_nms(nms_boxes, cand_scores.reshape(-1)[pos].float(), group, float(iou_thresh),
                                     per_class)
    else:
        sel = batched_nms(nms_boxes, cand_scores.reshape(-1)[pos].float(), group, float(iou_thresh))
    kept = torch.zeros(b * c * k, dtype=torch.bool, device=scores_t.device)
    kept[pos[sel]] = True
    kept = kept.view(b, c, k)
    rank = torch.cumsum(kept.to(torch.int64), dim=2) - 1  # candidates are sorted within a class
    kept = kept & (rank < per_class)
    return kept, cand_scores, cand_idx, cand_boxes


def batch_multiclass_non_max_suppression(
    boxes: Tensor,
    scores: Tensor,
    score_thresh: float,
    iou_thresh: float,
    max_size_per_class: int,
    max_total_size: int,
    clip_window: Tensor | None = None,
    change_coordinate_frame: bool = False,
    use_class_agnostic_nms: bool = False,
    soft_nms_sigma: float = 0.0,
    pre_nms_top_k: int | None = None,
) -> NmsResult:
    """See the module docstring. With pre_nms_top_k None the candidate prefix per (image, class) grows
    until the result provably equals full NMS (a pick only depends on higher-scored boxes); while
    tracing / exporting one prefix of max(4 * max_size_per_class, 1024) is used."""
    if boxes.dim() == 3:
        boxes = boxes.unsqueeze(2)
    b, a, q, _ = boxes.shape
    c = scores.shape[2]
    if q not in (1, c):
        raise ValueError(f"boxes have q={q}; expected 1 or the number of classes {c}")
    if max_total_size <= 0 or max_size_per_class <= 0:
        raise ValueError("max_total_size and max_size_per_class must be > 0")
    agnostic_classes = None
    if use_class_agnostic_nms:
        best_scores, agnostic_classes = scores.max(dim=2)  # [B, A]
        if q > 1:
            gi = agnostic_classes.view(b, a, 1, 1).expand(b, a, 1, 4)
            boxes = torch.gather(boxes, 2, gi)
        scores = best_scores.unsqueeze(2)
        c, q = 1, 1
        per_class = max_total_size
    else:
        per_class = max_size_per_class
    if soft_nms_sigma <= 0 and pre_nms_top_k is None and torch.onnx.is_in_onnx_export():
        # one ONNX NonMaxSuppression over all anchors: exact, and fast in onnxruntime (odkit.core.nms_export)
        return NmsResult(*nms_export.multiclass_nms(
            boxes, scores, score_thresh, iou_thresh, per_class, max_total_size, clip_window,
            change_coordinate_frame, agnostic_classes,
        ))
    scores_t = scores.transpose(1, 2)  # [B, C, A]
    flat = boxes[:, :, 0].unsqueeze(1).expand(b, c, a, 4) if q == 1 else boxes.permute(0, 2, 1, 3)
    adaptive = pre_nms_top_k is None and not _tracing()
    if pre_nms_top_k is None:
        # eager: start at twice the picks wanted (NMS work grows with prefix x picks) and grow 4x while some
        # class may still pick more; traced: one fixed prefix
        k = min(a, 2 * per_class if adaptive else max(4 * per_class, 1024))
    else:
        k = max(1, min(a, int(pre_nms_top_k)))
    while True:
        kept, cand_scores, cand_idx, cand_boxes = _candidates_nms(
            scores_t, flat, k, score_thresh, iou_thresh, per_class, soft_nms_sigma
        )
        if not adaptive or k >= a:
            break
        exhausted = cand_scores[..., -1] <= score_thresh if soft_nms_sigma <= 0 else None
        if soft_nms_sigma > 0:
            # exact when every pick scored at least the best candidate left outside the prefix
            orig_last = torch.gather(scores_t, 2, cand_idx[..., -1:]).squeeze(-1)
            min_pick = torch.where(kept, cand_scores, torch.full_like(cand_scores, float("inf"))).amin(dim=2)
            full = kept.sum(2) >= per_class
            exhausted = (orig_last <= score_thresh) | (full & (min_pick >= orig_last))
        else:
            exhausted = exhausted | (kept.sum(2) >= per_class)
        if bool(exhausted.all()):
            break
        k = min(a, 4 * k)

    out_boxes = cand_boxes
    if clip_window is not None:
        window = clip_window.to(cand_boxes.dtype)  # [4] or [B, 4]
        clipped = box_ops.clip_to_window(cand_boxes.reshape(b, c * k, 4), window)
        kept = kept & (box_ops.area(clipped) > 0).view(b, c, k)
        if change_coordinate_frame:
            clipped = box_ops.change_coordinate_frame(clipped, window)
        out_boxes = clipped.view(b, c, k, 4)

    neg_inf = torch.finfo(cand_scores.dtype).min
    ranked = torch.where(kept, cand_scores, torch.full_like(cand_scores, neg_inf)).reshape(b, c * k)
    kk = min(max_total_size, c * k)
    top_scores, top = ranked.topk(kk, dim=1)
    ok = top_scores > neg_inf
    det_boxes = torch.gather(out_boxes.reshape(b, c * k, 4), 1, top.unsqueeze(-1).expand(b, kk, 4))
    det_anchor = torch.gather(cand_idx.reshape(b, c * k), 1, top)
    if agnostic_classes is not None:
        det_classes = torch.gather(agnostic_classes, 1, det_anchor).to(scores.dtype)
    else:
        det_classes = torch.div(top, k, rounding_mode="floor").to(scores.dtype)
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    det_scores = torch.where(ok, top_scores, zero)
    det_boxes = torch.where(ok.unsqueeze(-1), det_boxes, zero)
    det_classes = torch.where(ok, det_classes, zero)
    det_anchor = torch.where(ok, det_anchor, torch.zeros_like(det_anchor))
    if kk < max_total_size:
        pad = max_total_size - kk
        det_boxes = torch.nn.functional.pad(det_boxes, (0, 0, 0, pad))
        det_scores = torch.nn.functional.pad(det_scores, (0, pad))
        det_classes = torch.nn.functional.pad(det_classes, (0, pad))
        det_anchor = torch.nn.functional.pad(det_anchor, (0, pad))
        ok = torch.nn.functional.pad(ok, (0, pad))
    return NmsResult(det_boxes, det_scores, det_classes, ok.sum(dim=1), det_anchor)
