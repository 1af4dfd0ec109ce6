"""Hard NMS for ONNX export: one ONNX `NonMaxSuppression` node, exact TF OD API semantics.

Used by `odkit.core.post_processing` only while `torch.onnx.export` traces (eager and TorchScript keep
their own paths). ONNX NonMaxSuppression is per (image, class) greedy NMS with `score > score_threshold`,
suppression at `iou > iou_threshold` and at most `max_output_boxes_per_class` picks — exactly
`batch_multiclass_non_max_suppression`'s per-class step, over *all* anchors, so no candidate prefix is
needed. onnxruntime runs it with a heap per class that stops after `max_size_per_class` picks: cost
O(anchors + picks x kept) per class instead of the O(N^2) of one offset-trick NMS over every candidate
of every class (the old graph: 37 classes x 1024 candidates -> ~1 s at batch 1).

`grouped_nms(boxes, scores, groups, iou_thresh, max_picks)` is for TorchScript traces instead: torchvision's
`batched_nms` runs one offset-trick NMS over every group while tracing; this one loops over the groups
in the trace (a scripted loop), indices of the kept boxes in no particular order.

`multiclass_nms(boxes [B, A, q, 4], scores [B, A, C], ...)` -> (boxes [B, K, 4], scores [B, K],
classes [B, K] (0-based, float), num_detections [B], anchor_indices [B, K]); `single_class_top_n(boxes
[B, N, 4], scores [B, N], max_output, iou_thresh)` -> (indices [B, max_output], valid) in pick order.
The merge after NMS (clip to the window, drop zero-area boxes, optional change of frame, the
`max_total_size` best over all classes) runs on the selected boxes only and needs no assumption about the
order in which the runtime lists them.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812
from torchvision.ops import nms as tv_nms

from odkit.core import box_ops

NEG = torch.finfo(torch.float32).min


def _greedy_nms_first_picks(xyxy: Tensor, scores: Tensor, score_thresh: float, iou_thresh: float,
                            max_picks: int) -> Tensor:
    """The first ``max_picks`` picks of greedy NMS over the boxes scoring above ``score_thresh``.

    Greedy NMS decides each box from the higher-scoring boxes only, so its picks within a prefix of the
    score order are exactly its picks overall: run it on a prefix and double the prefix until it yields
    ``max_picks`` picks or holds every candidate. With the configs' ``score_threshold: 1e-8`` every anchor is
    a candidate; one O(N^2) NMS per class over ~50k anchors made EfficientDet's export take minutes.
    """
    cand = torch.nonzero(scores > score_thresh).squeeze(1)
    order = torch.argsort(scores[cand], descending=True, stable=True)
    cand = cand[order]
    m = max(4 * max_picks, 64)
    while True:
        prefix = cand[:m]
        keep = prefix[tv_nms(xyxy[prefix], scores[prefix], float(iou_thresh))[:max_picks]]
        if keep.numel() >= max_picks or m >= cand.numel():
            return keep
        m *= 2


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX NonMaxSuppression: boxes [G, A, 4] (yxyx), scores [G, C, A] -> selected [N, 3] int64
    (group, class, anchor). ``forward`` (run once while tracing) computes the same selection in torch."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int, iou_thresh: float,  # type: ignore[override]
                score_thresh: float) -> Tensor:
        rows = []
        g, c, _ = scores.shape
        xyxy = box_ops.yxyx_to_xyxy(boxes).float()
        for gi in range(g):
            for ci in range(c):
                s = scores[gi, ci].float()
                keep = _greedy_nms_first_picks(xyxy[gi], s, score_thresh, iou_thresh, max_per_class)
                sel = torch.stack([torch.full_like(keep, gi), torch.full_like(keep, ci), keep], dim=1)
                rows.append(sel)
        return torch.cat(rows) if rows else torch.zeros((0, 3), dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class: int, iou_thresh: float, score_thresh: float):  # type: ignore[no-untyped-def]
        def const(value: Tensor):  # type: ignore[no-untyped-def]
            return g.op("Constant", value_t=value)

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(torch.tensor([max_per_class], dtype=torch.int64)),
            const(torch.tensor([iou_thresh], dtype=torch.float32)),
            const(torch.tensor([score_thresh], dtype=torch.float32)),
            center_point_box_i=0,
        )


@torch.jit.script_if_tracing
def grouped_nms(boxes: Tensor, scores: Tensor, groups: Tensor, iou_thresh: float, max_picks: int = -1) -> Tensor:
    """Indices of the boxes kept by NMS within each group (xyxy boxes), in no particular order.

    max_picks > 0: each group's boxes come in descending score order and only its first max_picks picks are
    wanted. NMS then runs on a prefix of 2 * max_picks boxes, growing 4x until it yields max_picks picks or
    covers the group: the same first picks as NMS over the whole group (a greedy pick depends only on
    higher-scored boxes), for a fraction of the work (NMS costs prefix length x picks)."""
    keep = torch.zeros_like(scores, dtype=torch.bool)
    for group in torch.unique(groups):
        idx = torch.where(groups == group)[0]
        n = int(idx.numel())
        m = n if max_picks <= 0 else min(n, 2 * max_picks)
        while True:
            pre = idx[:m]
            picked = torch.ops.torchvision.nms(boxes[pre], scores[pre], iou_thresh)
            if m >= n or int(picked.numel()) >= max_picks:
                keep[pre[picked]] = True
                break
            m = min(n, 4 * m)
    return torch.where(keep)[0]


def _per_image_top(img: Tensor, values: Tensor, batch: int, k: int) -> tuple[Tensor, Tensor]:
    """Top-k of the 1-D ``values`` within each image (``img`` = image of each entry, NEG = absent):
    (scores [B, k], indices [B, k] into ``values`` padded with k absent entries). Order-independent."""
    member = img.unsqueeze(0) == torch.arange(batch, device=img.device).unsqueeze(1)  # [B, N]
    ranked = torch.where(member, values.unsqueeze(0), torch.full_like(values, NEG).unsqueeze(0))
    ranked = F.pad(ranked, (0, k), value=NEG)  # k absent entries: topk(k) is valid for any N
    return ranked.topk(k, dim=1)


def multiclass_nms(
    boxes: Tensor,
    scores: Tensor,
    score_thresh: float,
    iou_thresh: float,
    per_class: int,
    max_total_size: int,
    clip_window: Tensor | None,
    change_coordinate_frame: bool,
    agnostic_classes: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The hard-NMS part of `batch_multiclass_non_max_suppression` as an exportable graph (see module doc).

    ``agnostic_classes [B, A]``: class-agnostic NMS was asked for; ``scores`` are then ``[B, A, 1]`` and
    the classes of the picks come from this tensor.
    """
    b, a, q, _ = boxes.shape
    c = scores.shape[2]
    if q == 1:
        nms_boxes = boxes[:, :, 0]  # [B, A, 4]
        nms_scores = scores.transpose(1, 2)  # [B, C, A]
    else:  # per-class boxes: one NMS group per (image, class)
        nms_boxes = boxes.permute(0, 2, 1, 3).reshape(b * c, a, 4)
        nms_scores = scores.transpose(1, 2).reshape(b * c, 1, a)
    selected = _NonMaxSuppression.apply(
        nms_boxes.contiguous(), nms_scores.contiguous(), int(per_class), float(iou_thresh), float(score_thresh)
    )
    group, cls, anchor = selected[:, 0], selected[:, 1], selected[:, 2]
    if q == 1:
        img = group
    else:
        img = torch.div(group, c, rounding_mode="floor")
        cls = group - img * c
    flat = (group * nms_scores.shape[1] + selected[:, 1]) * a + anchor
    sel_scores = nms_scores.reshape(-1).gather(0, flat)
    sel_boxes = nms_boxes.reshape(-1, 4).index_select(0, group * a + anchor)  # [N, 4]
    keep = torch.ones_like(sel_scores, dtype=torch.bool)
    if clip_window is not None:
        window = clip_window.to(sel_boxes.dtype)
        window = window.index_select(0, img) if window.dim() == 2 else window.unsqueeze(0).expand(img.shape[0], 4)
        sel_boxes = box_ops.clip_to_window(sel_boxes.unsqueeze(1), window).squeeze(1)
        keep = box_ops.area(sel_boxes) > 0
        if change_coordinate_frame:
            sel_boxes = box_ops.change_coordinate_frame(sel_boxes.unsqueeze(1), window).squeeze(1)
    k = int(max_total_size)
    top_scores, top = _per_image_top(img, torch.where(keep, sel_scores, torch.full_like(sel_scores, NEG)), b, k)
    ok = top_scores > NEG
    det_boxes = F.pad(sel_boxes, (0, 0, 0, k))[top]  # [B, K, 4]
    det_anchor = F.pad(anchor, (0, k))[top]
    if agnostic_classes is not None:
        det_classes = torch.gather(agnostic_classes, 1, det_anchor).to(scores.dtype)
    else:
        det_classes = F.pad(cls, (0, k))[top].to(scores.dtype)
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    det_scores = torch.where(ok, top_scores.to(scores.dtype), zero)
    det_boxes = torch.where(ok.unsqueeze(-1), det_boxes, zero)
    det_classes = torch.where(ok, det_classes, zero)
    det_anchor = torch.where(ok, det_anchor, torch.zeros_like(det_anchor))
    return det_boxes, det_scores, det_classes, ok.sum(dim=1), det_anchor


def single_class_top_n(boxes: Tensor, scores: Tensor, max_output: int, iou_thresh: float) -> tuple[Tensor, Tensor]:
    """`greedy_nms_top_n` as one ONNX NonMaxSuppression: (indices [B, max_output], valid) in pick order.

    Entries scored NEG are never picked (score_threshold NEG, strict). Greedy picks come in descending
    score order, so sorting the picks by score per image gives the pick order.
    """
    b = scores.shape[0]
    selected = _NonMaxSuppression.apply(
        boxes.contiguous(), scores.unsqueeze(1).contiguous(), int(max_output), float(iou_thresh), float(NEG)
    )
    img, anchor = selected[:, 0], selected[:, 2]
    sel_scores = scores.reshape(-1).gather(0, img * scores.shape[1] + anchor)
    top_scores, top = _per_image_top(img, sel_scores, b, int(max_output))
    ok = top_scores > NEG
    idx = torch.where(ok, F.pad(anchor, (0, int(max_output)))[top], torch.zeros_like(top))
    return idx, ok
