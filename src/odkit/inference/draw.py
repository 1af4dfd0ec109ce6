"""Draw detections on images for `odkit predict` (numpy + Pillow only; the drawing itself is odkit.drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from odkit.drawing import PALETTE, color_for, draw_boxes, draw_keypoints

__all__ = ["PALETTE", "color_for", "draw_boxes", "draw_detections", "draw_keypoints"]


def draw_detections(image: np.ndarray | Image.Image, detections: Sequence[Any]) -> Image.Image:
    """Draw odkit.inference.detector.Detection objects (class_id, class_name, score, box)."""
    return draw_boxes(
        image,
        [d.box for d in detections],
        [d.class_id for d in detections],
        [d.score for d in detections],
        {d.class_id: d.class_name for d in detections},
    )
