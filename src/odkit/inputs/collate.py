"""Batching: stack images into channels-last memory (padding to the batch max when sizes differ), pad boxes to a
fixed count."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from odkit.inputs.dataset import ERROR_KEY


def collate_examples(examples: Sequence[dict[str, Any]], max_boxes: int | None = None,
                     pad_value: Sequence[float] = (0.0, 0.0, 0.0)) -> dict[str, Any]:
    """Example dicts (from InputTransform + dataset) -> the batch dict of docs/ARCHITECTURE.md.

    Boxes beyond max_boxes are dropped (TF pads or clips to max_number_of_boxes); with max_boxes None
    they are padded to the batch max. Images of different sizes are padded bottom/right to the batch max
    and their boxes realigned to the padded frame.
    """
    for e in examples:
        if ERROR_KEY in e:
            return {ERROR_KEY: e[ERROR_KEY]}
    b = len(examples)
    hs = [int(e["image"].shape[-2]) for e in examples]
    ws = [int(e["image"].shape[-1]) for e in examples]
    H, W = max(hs), max(ws)
    # channels-last memory ([B, H, W, 3] underneath the [B, 3, H, W] view): the resizer's output layout, and
    # the layout the trainer's convolutions run in, so no image is transposed on its way to the model
    first = examples[0]["image"]
    if all(h == H for h in hs) and all(w == W for w in ws):
        images = torch.empty((b, H, W, 3), dtype=first.dtype)
    else:
        fill = torch.tensor(pad_value, dtype=torch.float32).round().clamp(0, 255).to(first.dtype)
        images = fill.expand(b, H, W, 3).clone()
    for i, e in enumerate(examples):
        images[i, :hs[i], :ws[i]] = e["image"].permute(1, 2, 0)
    images = images.permute(0, 3, 1, 2)
    counts = [int(e["boxes"].shape[0]) for e in examples]
    m = max(counts, default=0) if max_boxes is None else int(max_boxes)
    boxes = torch.zeros((b, m, 4), dtype=torch.float32)
    classes = torch.zeros((b, m), dtype=torch.int64)
    weights = torch.zeros((b, m), dtype=torch.float32)
    num = torch.zeros((b,), dtype=torch.int64)
    flag_keys = [k for k in ("difficult", "group_of", "is_crowd", "area") if all(k in e for e in examples)]
    flags = {k: torch.zeros((b, m), dtype=torch.float32 if k == "area" else torch.bool) for k in flag_keys}
    kp = _keypoint_arrays(examples, m)
    masks = torch.zeros((b, m, H, W), dtype=torch.uint8) if examples and all("masks" in e for e in examples) \
        else None
    for i, e in enumerate(examples):
        n = min(counts[i], m)
        scale = torch.tensor([hs[i] / H, ws[i] / W, hs[i] / H, ws[i] / W])
        if kp:
            kp["keypoints"][i, :n] = e["keypoints"][:n] * scale[:2]
            kp["keypoint_visibilities"][i, :n] = e["keypoint_visibilities"][:n]
            kp["keypoint_weights"][i, :n] = e["keypoint_weights"][:n]
        boxes[i, :n] = e["boxes"][:n] * scale
        if masks is not None:
            masks[i, :n, :hs[i], :ws[i]] = e["masks"][:n]
        classes[i, :n] = e["classes"][:n]
        weights[i, :n] = e["weights"][:n]
        for k in flag_keys:
            flags[k][i, :n] = e[k][:n]
        num[i] = n
    batch: dict[str, Any] = {
        "images": images,
        "true_image_shapes": torch.stack([e["true_image_shape"] for e in examples]).to(torch.int64),
        "groundtruth": {"boxes": boxes, "classes": classes, "weights": weights, "num_boxes": num, **flags, **kp,
                        **({"masks": masks} if masks is not None else {})},
        "source_ids": [e["source_id"] for e in examples],
        "filenames": [e["filename"] for e in examples],
        "original_sizes": torch.stack([e["original_size"] for e in examples]),
    }
    if all("original_image" in e for e in examples):
        batch["original_images"] = [e["original_image"] for e in examples]
    return batch


def _keypoint_arrays(examples: Sequence[dict[str, Any]], m: int) -> dict[str, torch.Tensor]:
    """Zero-padded keypoints [B, m, K, 2], visibilities [B, m, K], weights [B, m, K] when examples have them."""
    if not examples or not all("keypoints" in e for e in examples):
        return {}
    b, k = len(examples), int(examples[0]["keypoints"].shape[1])
    return {"keypoints": torch.zeros((b, m, k, 2), dtype=torch.float32),
            "keypoint_visibilities": torch.zeros((b, m, k), dtype=torch.bool),
            "keypoint_weights": torch.zeros((b, m, k), dtype=torch.float32)}


class Collator:
    """Picklable collate_fn for DataLoader workers."""

    def __init__(self, max_boxes: int | None = None, pad_value: Sequence[float] = (0.0, 0.0, 0.0)) -> None:
        self.max_boxes = max_boxes
        self.pad_value = tuple(pad_value)

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return collate_examples(examples, self.max_boxes, self.pad_value)


CollateFn = Callable[[Sequence[dict[str, Any]]], dict[str, Any]]
