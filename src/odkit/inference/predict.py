"""Run a Detector over files / folders / globs; write drawn images and detections.json or .csv."""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from odkit.errors import DataError, OdkitError
from odkit.fileio import atomic_write_bytes
from odkit.inference.detector import Detector
from odkit.inference.draw import draw_detections
from odkit.inference.images import IMAGE_EXTENSIONS, open_image

CSV_FIELDS = ("image", "width", "height", "class_id", "class_name", "score", "ymin", "xmin", "ymax", "xmax", "error")


def expand_image_paths(specs: str | Sequence[str]) -> list[Path]:
    """Files, folders (their image files, sorted) and globs -> list of paths; OdkitError when none match."""
    specs = [specs] if isinstance(specs, str) else list(specs)
    out: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise OdkitError(f"folder {spec} has no image files ({', '.join(IMAGE_EXTENSIONS)})")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        elif glob.has_magic(spec):
            found = sorted(Path(q) for q in glob.glob(spec, recursive=True) if Path(q).is_file())
            if not found:
                raise OdkitError(f"no files match --images {spec!r}")
            out.extend(found)
        else:
            raise OdkitError(f"--images {spec!r}: no such file or folder")
    return list(dict.fromkeys(out))


@dataclass
class PredictSummary:
    """Outcome of a run: per-image records (as written) and counts."""

    records: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0
    output_file: Path | None = None


def _atomic_write(path: Path, data: bytes) -> None:
    atomic_write_bytes(path, data)


def _drawn_name(path: Path, used: set[str]) -> str:
    ext = path.suffix.lower() if path.suffix.lower() in (".jpg", ".jpeg", ".png") else ".png"
    name, k = f"{path.stem}{ext}", 1
    while name in used or name in ("detections.json", "detections.csv"):
        name, k = f"{path.stem}_{k}{ext}", k + 1
    used.add(name)
    return name


def _csv_bytes(records: Sequence[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in records:
        base = {"image": r["image"], "width": r.get("width", ""), "height": r.get("height", "")}
        if "error" in r:
            writer.writerow({**base, "error": r["error"]})
        for d in r.get("detections", []):
            ymin, xmin, ymax, xmax = d["box"]
            writer.writerow({**base, "class_id": d["class_id"], "class_name": d["class_name"], "score": d["score"],
                             "ymin": ymin, "xmin": xmin, "ymax": ymax, "xmax": xmax})
    return buf.getvalue().encode()


def predict_images(
    detector: Detector,
    paths: Sequence[Path],
    output_dir: str | os.PathLike[str],
    *,
    min_score: float = 0.5,
    max_boxes: int = 20,
    output_format: str = "json",
    draw: bool = True,
    progress: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Detect on each image; one unreadable image is recorded with an "error" and does not stop the run."""
    if output_format not in ("json", "csv"):
        raise OdkitError(f"unknown --format {output_format!r}", hint="use json or csv")
    out_dir = Path(output_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OdkitError(f"--output_dir {out_dir} exists and is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    progress = progress or (lambda msg: print(msg, file=sys.stderr, flush=True))
    summary = PredictSummary()
    used: set[str] = set()
    start = time.perf_counter()
    for i, path in enumerate(paths, 1):
        record: dict[str, Any] = {"image": str(path)}
        t0 = time.perf_counter()
        try:
            pil = open_image(path, detector.max_pixels)
            pixels = np.asarray(pil, dtype=np.uint8)
            record["width"], record["height"] = pil.width, pil.height
            dets = detector.to_detections(
                detector.run_batch(pixels[None]), min_score=min_score, max_boxes=max_boxes,
                image_hw=(pil.height, pil.width),
            )
            record["detections"] = [d.to_dict() for d in dets]
            if draw:
                name = _drawn_name(path, used)
                buf = io.BytesIO()
                fmt = "PNG" if name.endswith(".png") else "JPEG"
                drawn = draw_detections(pil, dets, detector.keypoint_edges)
                drawn.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
                _atomic_write(out_dir / name, buf.getvalue())
                record["output_image"] = str(out_dir / name)
            ms = (time.perf_counter() - t0) * 1000
            progress(f"[{i}/{len(paths)}] {path}: {len(dets)} detection(s), {ms:.0f} ms")
        except DataError as exc:
            summary.failed += 1
            record["error"] = exc.one_line()
            progress(f"[{i}/{len(paths)}] {path}: skipped: {exc.one_line()}")
        except Exception as exc:  # noqa: BLE001 - a runtime failure on one image must not stop the run
            summary.failed += 1
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            record["error"] = f"inference failed: {type(exc).__name__}: {first}"
            progress(f"[{i}/{len(paths)}] {path}: skipped: {record['error']}")
        summary.records.append(record)
    summary.seconds = time.perf_counter() - start
    target = out_dir / f"detections.{output_format}"
    if output_format == "json":
        _atomic_write(target, (json.dumps(summary.records, indent=2) + "\n").encode())
    else:
        _atomic_write(target, _csv_bytes(summary.records))
    summary.output_file = target
    return summary
