"""Draw boxes, class names and scores on images (numpy + Pillow only; reusable outside inference)."""

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
) -> Image.Image:
    """Return an RGB copy of ``image`` with normalized [ymin, xmin, ymax, xmax] boxes and labels drawn."""
    img = Image.fromarray(np.asarray(image, dtype=np.uint8)) if isinstance(image, np.ndarray) else image
    img = img.convert("RGB").copy()
    w, h = img.size
    lw = line_width or max(1, round(min(w, h) / 200))
    font = _font(max(10, round(min(w, h) / 40)))
    draw = ImageDraw.Draw(img)
    boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes_arr):
        cid = int(class_ids[i])
        color = color_for(cid)
        x0, y0, x1, y1 = xmin * w, ymin * h, xmax * w, ymax * h
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=color, width=lw)
        label = (class_names or {}).get(cid, str(cid))
        if scores is not None:
            label = f"{label} {float(scores[i]):.0%}"
        tb = draw.textbbox((0, 0), label, font=font)
        tw, th = tb[2] - tb[0], tb[3] - tb[1]
        ty = y0 - th - 4 if y0 - th - 4 >= 0 else y0
        draw.rectangle([x0, ty, x0 + tw + 4, ty + th + 4], fill=color)
        draw.text((x0 + 2, ty + 2 - tb[1]), label, fill=(0, 0, 0) if sum(color) > 400 else (255, 255, 255), font=font)
    return img


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


def draw_detections(image: np.ndarray | Image.Image, detections: Sequence[Any]) -> Image.Image:
    """Draw odkit.inference.detector.Detection objects (class_id, class_name, score, box, optional mask)."""
    with_masks = [d for d in detections if getattr(d, "mask", None) is not None]
    if with_masks:
        image = draw_masks(image, [d.mask for d in with_masks], [d.class_id for d in with_masks])
    return draw_boxes(
        image,
        [d.box for d in detections],
        [d.class_id for d in detections],
        [d.score for d in detections],
        {d.class_id: d.class_name for d in detections},
    )
