"""Compare two detection dicts (numpy, TF OD API names): used by export verification, tests, benchmarks."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def _dets(
    d: Mapping[str, np.ndarray], index: int, min_score: float
) -> list[tuple[int, float, np.ndarray, np.ndarray | None]]:
    n = int(np.asarray(d["num_detections"]).reshape(-1)[index])
    boxes = np.asarray(d["detection_boxes"])[index][:n]
    scores = np.asarray(d["detection_scores"])[index][:n]
    classes = np.asarray(d["detection_classes"])[index][:n]
    masks = np.asarray(d["detection_masks"])[index][:n] if "detection_masks" in d else [None] * n
    if "detection_keypoints" in d:  # keypoints compared like box coordinates (both normalized)
        kps = np.asarray(d["detection_keypoints"])[index][:n].reshape(n, -1)
        boxes = np.concatenate([boxes, kps], axis=1)
    return [(int(c), float(s), b, m) for b, s, c, m in zip(boxes, scores, classes, masks) if s >= min_score]


def detection_differences(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    min_score: float = 0.3,
    box_tol: float = 1e-3,
    score_tol: float = 1e-3,
) -> list[str]:
    """Detections of ``expected`` (score >= min_score + score_tol) missing from ``actual`` and vice versa.

    A detection matches when the class is equal, |score diff| <= score_tol and every box coordinate is
    within box_tol. Returns human-readable problems (empty when they agree).
    """
    return match_detections(expected, actual, min_score=min_score, box_tol=box_tol, score_tol=score_tol)[0]


def match_detections(
    expected: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    *,
    min_score: float = 0.3,
    box_tol: float = 1e-3,
    score_tol: float = 1e-3,
    mask_tol: float = 2e-3,
) -> tuple[list[str], int, float]:
    """(problems, number of expected detections compared, largest box difference among matched pairs).

    With `detection_masks` in both, a matched pair's per-box masks must also agree within mask_tol; with
    `detection_keypoints` in both, their coordinates count as box coordinates (within box_tol)."""
    problems: list[str] = []
    compared, worst = 0, 0.0
    batch = np.asarray(expected["num_detections"]).reshape(-1).shape[0]
    if np.asarray(actual["num_detections"]).reshape(-1).shape[0] != batch:
        other = np.asarray(actual["num_detections"]).reshape(-1).shape[0]
        return [f"batch size differs: {batch} vs {other}"], 0, float("inf")
    for i in range(batch):
        for name, a, b in (("expected", expected, actual), ("actual", actual, expected)):
            others = _dets(b, i, min_score - score_tol)
            for cls, score, box, mask in _dets(a, i, min_score + score_tol):
                cands = [(float(np.abs(bx - box).max()), m) for c, s, bx, m in others
                         if c == cls and abs(s - score) <= score_tol]
                diffs = [d for d, _ in cands]
                ok = bool(diffs) and min(diffs) <= box_tol
                if ok and mask is not None:
                    best = cands[int(np.argmin(diffs))][1]
                    mask_diff = float(np.abs(best - mask).max()) if best is not None else float("inf")
                    if mask_diff > mask_tol:
                        problems.append(f"image {i}: detection class {cls} masks differ by {mask_diff:.3g}")
                if name == "expected":
                    compared += 1
                    worst = max(worst, min(diffs)) if ok else worst
                if not ok:
                    problems.append(
                        f"image {i}: {name} detection class {cls} score {score:.4f} box "
                        f"{np.round(box, 4).tolist()} has no match"
                    )
    return problems, compared, worst


def max_abs_diff(expected: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray], name: str) -> float:
    """Largest absolute difference of one output (inf when shapes differ)."""
    a, b = np.asarray(expected[name]), np.asarray(actual[name])
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b).max()) if a.size else 0.0
