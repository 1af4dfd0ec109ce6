"""Per-class precision/recall curves (matplotlib, Agg backend) from the COCO evaluation arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from odkit.evaluation.coco import AREA_LABELS, IOU_THRESHOLDS, MAX_DETS, REC_THRESHOLDS, CocoEvalResult
from odkit.fileio import atomic_save


def coco_pr_curves(result: CocoEvalResult, iou: float = 0.5) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """category id -> (recall points, interpolated precision) at ``iou``, area all, 100 detections.

    Categories without groundtruth are left out.
    """
    t = int(np.argmin(np.abs(IOU_THRESHOLDS - iou)))
    a, m = AREA_LABELS.index("all"), MAX_DETS.index(100)
    out = {}
    for k, cid in enumerate(result.category_ids):
        p = result.precision[t, :, k, a, m]
        if np.all(p == -1):
            continue
        out[int(cid)] = (REC_THRESHOLDS.copy(), p.copy())
    return out


def plot_pr_curves(curves: dict[int, tuple[np.ndarray, np.ndarray]], names: dict[int, str], path: str | Path,
                   title: str = "precision / recall, IoU 0.5") -> Path:
    """Write one figure with a curve per class (legend with AP) to ``path`` (atomically)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for cid in sorted(curves):
        r, p = curves[cid]
        ax.plot(r, p, label=f"{names.get(cid, str(cid))} (AP {float(np.mean(p)):.3f})", linewidth=1.2)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="lower left", fontsize="small", ncol=1 if len(curves) <= 12 else 2)
    else:
        ax.text(0.5, 0.5, "no groundtruth", ha="center", va="center")
    path = Path(path)
    atomic_save(path, lambda tmp: fig.savefig(tmp, format=path.suffix.lstrip(".") or "png"))
    return path
