"""Side-by-side evaluation pictures (groundtruth | detections), numpy + Pillow only."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor, ImageDraw

from odkit.drawing import draw_boxes, draw_keypoints


def side_by_side(
    image: np.ndarray,
    gt_boxes: np.ndarray,
    gt_classes: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    class_names: dict[int, str],
    *,
    min_score_threshold: float = 0.5,
    max_boxes: int = 20,
    skip_scores: bool = False,
    skip_labels: bool = False,
    groundtruth_on_detections: bool = False,
    groundtruth_color: str = "black",
    keypoints: dict[str, np.ndarray] | None = None,
    keypoint_edges: tuple[tuple[int, int], ...] = (),
) -> np.ndarray:
    """HxWx3 uint8 image -> (H+14)x(2W+gap)x3: groundtruth on the left, detections on the right, titled.

    Boxes are normalized [ymin, xmin, ymax, xmax]. Detections below ``min_score_threshold`` are not
    drawn, at most ``max_boxes`` of them (highest scores first), as the TF OD API's visualization.
    ``groundtruth_on_detections`` (eval_config.visualize_groundtruth_boxes) also outlines the
    groundtruth on the detections panel in ``groundtruth_color``. ``keypoints`` (normalized (y, x)):
    "gt" [N, K, 2] with "gt_visible" [N, K], "det" [D, K, 2] with "det_scores" [D, K] (keypoints scoring
    under ``min_score_threshold`` are not drawn); ``keypoint_edges`` (eval_config.keypoint_edge) join them.
    """
    img = np.asarray(image, dtype=np.uint8)
    keep = np.flatnonzero(np.asarray(det_scores) >= min_score_threshold)
    keep = keep[np.argsort(-np.asarray(det_scores)[keep], kind="stable")][: max(0, int(max_boxes))]
    names = {} if skip_labels else class_names
    left = draw_boxes(img, np.asarray(gt_boxes).reshape(-1, 4), np.asarray(gt_classes).reshape(-1), None, names)
    right = draw_boxes(
        img,
        np.asarray(det_boxes).reshape(-1, 4)[keep],
        np.asarray(det_classes).reshape(-1)[keep],
        None if skip_scores else np.asarray(det_scores).reshape(-1)[keep],
        names,
    )
    h, w = img.shape[:2]
    if keypoints:
        if "gt" in keypoints:
            draw_keypoints(left, keypoints["gt"], keypoints.get("gt_visible"), np.asarray(gt_classes).reshape(-1),
                           keypoint_edges)
        if "det" in keypoints:
            det_kp = np.asarray(keypoints["det"])[keep]
            kp_ok = np.asarray(keypoints.get("det_scores", np.ones(det_kp.shape[:2])))[keep] >= min_score_threshold
            draw_keypoints(right, det_kp, kp_ok, np.asarray(det_classes).reshape(-1)[keep], keypoint_edges)
    if groundtruth_on_detections:
        try:
            color = ImageColor.getrgb(groundtruth_color)
        except ValueError:
            color = (0, 0, 0)
        draw = ImageDraw.Draw(right)
        lw = max(1, round(min(w, h) / 200))
        for ymin, xmin, ymax, xmax in np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4):
            draw.rectangle([xmin * w, ymin * h, max(xmin, xmax) * w, max(ymin, ymax) * h], outline=color, width=lw)
    gap = max(2, w // 100)
    head = 14
    canvas = Image.new("RGB", (2 * w + gap, h + head), (255, 255, 255))
    canvas.paste(left, (0, head))
    canvas.paste(right, (w + gap, head))
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 1), "groundtruth", fill=(0, 0, 0))
    draw.text((w + gap + 2, 1), f"detections (score >= {min_score_threshold:g})", fill=(0, 0, 0))
    return np.asarray(canvas)
