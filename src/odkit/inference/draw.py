"""Draw detections on images for `odkit predict` (numpy + Pillow only; the drawing itself is odkit.drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from odkit.drawing import PALETTE, color_for, draw_boxes, draw_keypoints, draw_masks

__all__ = ["PALETTE", "color_for", "draw_boxes", "draw_detections", "draw_keypoints", "draw_masks"]


def draw_detections(image: np.ndarray | Image.Image, detections: Sequence[Any],
                    keypoint_edges: Sequence[tuple[int, int]] = (), min_keypoint_score: float = 0.0) -> Image.Image:
    """Draw odkit.inference.detector.Detection objects (class_id, class_name, score, box, optional mask and
    keypoints; keypoints scoring below ``min_keypoint_score`` are left out, ``keypoint_edges`` join them)."""
    with_masks = [d for d in detections if getattr(d, "mask", None) is not None]
    if with_masks:
        image = draw_masks(image, [d.mask for d in with_masks], [d.class_id for d in with_masks])
    img = draw_boxes(
        image,
        [d.box for d in detections],
        [d.class_id for d in detections],
        [d.score for d in detections],
        {d.class_id: d.class_name for d in detections},
    )
    with_kp = [d for d in detections if getattr(d, "keypoints", None) is not None]
    if with_kp:
        pts = np.asarray([d.keypoints for d in with_kp], dtype=np.float64)
        scores = np.asarray([d.keypoint_scores or [1.0] * len(d.keypoints) for d in with_kp], dtype=np.float64)
        draw_keypoints(img, pts, scores >= min_keypoint_score, [d.class_id for d in with_kp], keypoint_edges)
    return img
