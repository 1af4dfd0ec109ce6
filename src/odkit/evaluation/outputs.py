"""Files an evaluation writes into D/eval: metrics JSON, TensorBoard events, pictures, PR curves."""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from odkit.evaluation.coco import COCO_METRIC_KEYS
from odkit.evaluation.pr_curves import coco_pr_curves, plot_pr_curves
from odkit.evaluation.settings import eval_settings
from odkit.fileio import atomic_save, atomic_write_text

log = logging.getLogger(__name__)


def json_safe(metrics: Mapping[str, float]) -> dict[str, float | None]:
    """NaN (e.g. PASCAL AP of a class without groundtruth) -> null, so the JSON stays standard."""
    return {k: (None if math.isnan(float(v)) else float(v)) for k, v in metrics.items()}


def write_json_atomic(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False))


def save_png_atomic(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    atomic_save(path, lambda tmp: pil.save(tmp, format="PNG"), suffix=".png")


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80] or "image"


def write_eval_outputs(eval_dir: Path, step: int, metrics: Mapping[str, float], extras: Any, eval_config: Any,
                       names: dict[int, str]) -> None:
    """metrics-ckpt-<step>.json, metrics.json (latest), TensorBoard scalars + images, side_by_side_<i>.png,
    pr_curves.png; eval_config.export_path (COCO detections JSON) and visualization_export_dir when set."""
    eval_dir = Path(eval_dir)
    eval_dir.mkdir(parents=True, exist_ok=True)
    safe = json_safe(metrics)
    write_json_atomic(eval_dir / f"metrics-ckpt-{step}.json", safe)
    write_json_atomic(eval_dir / "metrics.json", safe)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(eval_dir))
    try:
        for k, v in metrics.items():
            if not math.isnan(float(v)):
                writer.add_scalar(k, float(v), step)
        for i, (_, pic) in enumerate(extras.pictures):
            writer.add_image(f"eval_side_by_side_{i}", pic, step, dataformats="HWC")
    finally:
        writer.close()

    for i, (_, pic) in enumerate(extras.pictures):
        save_png_atomic(eval_dir / f"side_by_side_{i}.png", pic)
    settings = eval_settings(eval_config)
    export_dir = settings.visualization_export_dir
    if export_dir:
        keep_id = settings.keep_image_id_for_visualization_export
        for i, (image_id, pic) in enumerate(extras.pictures):
            tag = _safe_name(image_id) if keep_id else f"image-{i}"
            save_png_atomic(Path(export_dir) / f"export-{step}-{tag}.png", pic)

    acc = extras.accumulator
    if acc is not None:
        if acc.coco_result is not None:
            plot_pr_curves(coco_pr_curves(acc.coco_result), names, eval_dir / "pr_curves.png",
                           title=f"precision / recall at IoU 0.5 (COCO, step {step})")
        elif acc.pascal_curves:
            curves = {k: (r, p) for k, (p, r) in acc.pascal_curves.items()}
            plot_pr_curves(curves, names, eval_dir / "pr_curves.png",
                           title=f"precision / recall at IoU 0.5 (PASCAL, step {step})")
        export_path = settings.export_path
        if export_path:
            _, dets = acc.coco_json()
            write_json_atomic(Path(export_path), dets)


def format_table(metrics: Mapping[str, float], step: int | None = None) -> str:
    """The 12 COCO numbers (and any other scalar) as a short aligned table."""
    keys = [k for k in COCO_METRIC_KEYS if k in metrics] + [k for k in metrics if k not in COCO_METRIC_KEYS]
    width = max((len(k) for k in keys), default=10)
    head = f"metrics at step {step}" if step is not None else "metrics"
    lines = [head, "-" * (width + 10)]
    for k in keys:
        v = float(metrics[k])
        lines.append(f"{k:<{width}}  {'n/a' if math.isnan(v) else f'{v:8.4f}'}")
    return "\n".join(lines)
