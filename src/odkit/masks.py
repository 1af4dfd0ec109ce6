"""Instance-mask geometry shared by evaluation, inference and the input pipeline (numpy only, no torch, so
the light `odkit predict` install can use it).

`reframe_box_masks_to_image_masks(box_masks [N, mh, mw], boxes [N, 4] normalized yxyx, image_height,
image_width, method="bilinear") -> [N, image_height, image_width]` is TF's
`utils/ops.reframe_box_masks_to_image_masks`: `tf.image.crop_and_resize` of each box mask with the box
expressed in the mask's own frame ((unit box - box min) / max(box size, 1e-4)), extrapolation value 0,
float32 arithmetic in the TF kernel's order. uint8 masks use nearest sampling (TF: `roundf`), floats
bilinear. The result has the input dtype; the TF OD API then thresholds float masks at 0.5 (`binarize`).
"""

from __future__ import annotations

import numpy as np


def _sample_axis(lo: np.ndarray, hi: np.ndarray, src: int, dst: int) -> tuple[np.ndarray, np.ndarray]:
    """TF crop_and_resize source coordinates [N, dst] (float32) and the inside-the-source flags."""
    lo = lo.astype(np.float32)[:, None]
    hi = hi.astype(np.float32)[:, None]
    span = np.float32(src - 1)
    if dst > 1:
        scale = (hi - lo) * span / np.float32(dst - 1)
        pos = lo * span + np.arange(dst, dtype=np.float32)[None, :] * scale
    else:
        pos = np.float32(0.5) * (lo + hi) * span * np.ones((1, dst), np.float32)
    pos = pos.astype(np.float32)
    inside = (pos >= 0) & (pos <= span)
    return pos, inside


def reframe_box_masks_to_image_masks(
    box_masks: np.ndarray, boxes: np.ndarray, image_height: int, image_width: int, method: str = "bilinear"
) -> np.ndarray:
    """Paste per-box masks into image-sized masks (TF `reframe_box_masks_to_image_masks`)."""
    box_masks = np.asarray(box_masks)
    n = box_masks.shape[0]
    out_dtype = box_masks.dtype
    if n == 0:
        return np.zeros((0, image_height, image_width), out_dtype)
    if box_masks.dtype == np.uint8:
        method = "nearest"
    boxes = np.asarray(boxes, dtype=np.float32).reshape(n, 4)
    mh, mw = box_masks.shape[1:3]
    mins = boxes[:, 0:2]
    denom = np.maximum(boxes[:, 2:4] - mins, np.float32(1e-4)).astype(np.float32)
    lo = ((np.float32(0.0) - mins) / denom).astype(np.float32)
    hi = ((np.float32(1.0) - mins) / denom).astype(np.float32)
    ys, y_in = _sample_axis(lo[:, 0], hi[:, 0], mh, image_height)
    xs, x_in = _sample_axis(lo[:, 1], hi[:, 1], mw, image_width)
    src = box_masks.astype(np.float32)
    rows = np.arange(n)[:, None, None]
    if method == "nearest":
        yi = np.clip(np.floor(ys + np.float32(0.5)), 0, mh - 1).astype(np.int64)  # roundf: half away from 0
        xi = np.clip(np.floor(xs + np.float32(0.5)), 0, mw - 1).astype(np.int64)
        out = src[rows, yi[:, :, None], xi[:, None, :]]
    else:
        top = np.clip(np.floor(ys), 0, mh - 1).astype(np.int64)
        bottom = np.clip(np.ceil(ys), 0, mh - 1).astype(np.int64)
        left = np.clip(np.floor(xs), 0, mw - 1).astype(np.int64)
        right = np.clip(np.ceil(xs), 0, mw - 1).astype(np.int64)
        ly = (ys - np.floor(ys)).astype(np.float32)[:, :, None]
        lx = (xs - np.floor(xs)).astype(np.float32)[:, None, :]
        tl = src[rows, top[:, :, None], left[:, None, :]]
        tr = src[rows, top[:, :, None], right[:, None, :]]
        bl = src[rows, bottom[:, :, None], left[:, None, :]]
        br = src[rows, bottom[:, :, None], right[:, None, :]]
        t = tl + (tr - tl) * lx
        b = bl + (br - bl) * lx
        out = t + (b - t) * ly
    out = np.where(y_in[:, :, None] & x_in[:, None, :], out, np.float32(0.0))
    return out.astype(out_dtype)
