"""Boxes, class names, scores, keypoints and instance masks drawn on images, and the class colour palette: the one drawing
module (numpy + Pillow only), used by predict, eval pictures, `records inspect --draw` and `records preview`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128), (170, 110, 40),
)  # fmt: skip


def color_for(class_id: int) -> tuple[int, int, int]:
    """A stable colour per class id."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _font(size: int) -> Any:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def draw_boxes(
    image: np.ndarray | Image.Image,
    boxes: np.ndarray | Sequence[Sequence[float]],
    class_ids: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
    class_names: Mapping[int, str] | None = None,
    line_width: int | None = None,
    labels: Sequence[str | None] | None = None,
) -> Image.Image:
    """Return an RGB copy of ``image`` with normalized [ymin, xmin, ymax, xmax] boxes and labels drawn.

    A box's label is ``labels[i]`` when given (and not empty), else its class name (``class_names``) or id, plus
    the score when ``scores`` are given. Boxes with non-finite coordinates (corrupt records) are not drawn."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    img = img.convert("RGB").copy()
    w, h = img.size
    lw = line_width or max(1, round(min(w, h) / 200))
    font = _font(max(10, round(min(w, h) / 40)))
    draw = ImageDraw.Draw(img)
    boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes_arr):
        if not np.isfinite(boxes_arr[i]).all():
            continue
        cid = int(class_ids[i])
        color = color_for(cid)
        x0, y0, x1, y1 = xmin * w, ymin * h, xmax * w, ymax * h
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=lw)
        given = labels[i] if labels is not None and i < len(labels) else None
        label = given or (class_names or {}).get(cid, str(cid))
        if scores is not None:
            label = f"{label} {float(scores[i]):.0%}"
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y0 - th - 4 if y0 - th - 4 >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw + 4, ty + th + 4], fill=color)
        draw.text((x0 + 2, ty + 2 - tb[1]), label, fill=(0, 0, 0) if sum(color) > 400 else (255, 255, 255), font=font)
    return img


def draw_keypoints(
    image: Image.Image,
    keypoints: np.ndarray | Sequence[Any],
    visible: np.ndarray | Sequence[Any] | None = None,
    class_ids: Sequence[int] | np.ndarray | None = None,
    edges: Sequence[tuple[int, int]] = (),
    radius: int | None = None,
) -> Image.Image:
    """Draw keypoints in place on ``image``: [N, K, 2] normalized (y, x); ``visible`` [N, K] (default: finite
    coordinates); a dot per keypoint in its object's class colour, ``edges`` (start, end) as lines."""
    pts = np.asarray(keypoints, dtype=np.float64)
    if pts.size == 0:
        return image
    pts = pts.reshape((-1,) + pts.shape[-2:])
    ok = np.isfinite(pts).all(axis=-1)
    if visible is not None:
        ok &= np.asarray(visible, dtype=bool).reshape(ok.shape)
    w, h = image.size
    r = radius or max(2, round(min(w, h) / 150))
    draw = ImageDraw.Draw(image)
    for i in range(pts.shape[0]):
        color = color_for(int(class_ids[i]) if class_ids is not None else 1)
        xy = [(float(p[1]) * w, float(p[0]) * h) for p in pts[i]]
        for a, b in edges:
            if 0 <= a < len(xy) and 0 <= b < len(xy) and ok[i, a] and ok[i, b]:
                draw.line([xy[a], xy[b]], fill=color, width=max(1, r // 2))
        for k, (x, y) in enumerate(xy):
            if ok[i, k]:
                draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(255, 255, 255))
    return image


def draw_masks(
    image: np.ndarray | Image.Image, masks: Sequence[np.ndarray], class_ids: Sequence[int], alpha: float = 0.45
) -> Image.Image:
    """Return an RGB copy of ``image`` with binary [H, W] masks blended in their class colours."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    pixels = np.asarray(img.convert("RGB"), dtype=np.float32).copy()
    for mask, cid in zip(masks, class_ids):
        on = np.asarray(mask, dtype=bool)
        if on.shape != pixels.shape[:2]:
            raise ValueError(f"mask shape {on.shape} differs from the image {pixels.shape[:2]}")
        pixels[on] = (1 - alpha) * pixels[on] + alpha * np.asarray(color_for(int(cid)), np.float32)
    return Image.fromarray(np.round(pixels).astype(np.uint8))
