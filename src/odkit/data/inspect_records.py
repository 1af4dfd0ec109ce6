"""``odkit records inspect``: counts, classes, box-size histogram, JSON lines, drawn previews.

No torch needed: images are only header-read (sizes) or decoded with Pillow for drawing.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np

from odkit.data.example import DetectionExample, decode_detection_example
from odkit.data.image_io import decode_image_pil
from odkit.data.tfrecord import expand_paths, iter_records_with_location
from odkit.drawing import draw_boxes, draw_keypoints, draw_masks
from odkit.errors import DataError, OdkitError
from odkit.fileio import atomic_write_bytes

# Box size = sqrt(relative area), the fraction of the image side a square box of that area would span.
SIZE_EDGES = (0.0, 0.05, 0.1, 0.2, 0.4, 0.7, 1.0001)


@dataclass
class RecordItem:
    path: str
    shard: int
    index_in_shard: int
    offset: int
    example: DetectionExample


@dataclass
class InspectStats:
    files: list[str] = field(default_factory=list)
    records: int = 0
    boxes: int = 0
    images_without_boxes: int = 0
    classes: Counter[tuple[int, str]] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    heights: list[int] = field(default_factory=list)
    widths: list[int] = field(default_factory=list)
    box_sizes: list[float] = field(default_factory=list)
    per_file: Counter[str] = field(default_factory=Counter)
    skipped: list[str] = field(default_factory=list)
    keypoints_per_object: Counter[int] = field(default_factory=Counter)  # K -> objects with K keypoint slots
    keypoints_labelled: int = 0  # visibility 1 or 2

    def add(self, item: RecordItem) -> None:
        ex = item.example
        self.records += 1
        self.per_file[item.path] += 1
        self.boxes += ex.num_boxes
        if ex.num_boxes == 0:
            self.images_without_boxes += 1
        self.formats[ex.format] += 1
        self.heights.append(ex.height)
        self.widths.append(ex.width)
        texts = ex.texts if len(ex.texts) == ex.num_boxes else [""] * ex.num_boxes
        for lab, t in zip(ex.labels.tolist(), texts):
            self.classes[(int(lab), t)] += 1
        if ex.num_keypoints:
            self.keypoints_per_object[ex.num_keypoints] += ex.num_boxes
            self.keypoints_labelled += int((ex.keypoint_visibility > 0).sum())
        if ex.num_boxes:
            b = ex.boxes.astype(np.float64)
            area = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
            self.box_sizes.extend(np.sqrt(area).tolist())

    def histogram(self) -> list[tuple[str, int]]:
        counts, _ = np.histogram(np.asarray(self.box_sizes, np.float64), bins=SIZE_EDGES)
        labels = [f"{lo:.2f}-{min(hi, 1.0):.2f}" for lo, hi in zip(SIZE_EDGES[:-1], SIZE_EDGES[1:])]
        return list(zip(labels, counts.tolist()))

    def as_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files), "records": self.records, "boxes": self.boxes,
            "images_without_boxes": self.images_without_boxes,
            "classes": [{"label": k[0], "text": k[1], "boxes": v} for k, v in sorted(self.classes.items())],
            "formats": dict(self.formats), "box_size_histogram": dict(self.histogram()),
            "skipped": len(self.skipped),
            **({"keypoints_per_object": dict(self.keypoints_per_object),
                "keypoints_labelled": self.keypoints_labelled} if self.keypoints_per_object else {}),
        }

    def format(self) -> str:
        lines = [f"{self.records} records in {len(self.files)} file(s), {self.boxes} boxes, "
                 f"{self.images_without_boxes} images without boxes"]
        for p in self.files:
            lines.append(f"  {p}: {self.per_file.get(p, 0)} records")
        if self.heights:
            h, w = np.asarray(self.heights), np.asarray(self.widths)
            lines.append(f"image sizes (h x w): min {h.min()}x{w.min()}, median {int(np.median(h))}x"
                         f"{int(np.median(w))}, max {h.max()}x{w.max()}")
        lines.append("formats: " + ", ".join(f"{k} {v}" for k, v in sorted(self.formats.items())))
        lines.append("classes (label, text: boxes):")
        for (lab, text), n in sorted(self.classes.items()):
            lines.append(f"  {lab:>4} {text or '-'}: {n}")
        if self.keypoints_per_object:
            kinds = ", ".join(f"{n} objects x {k}" for k, n in sorted(self.keypoints_per_object.items()))
            lines.append(f"keypoints: {kinds}, {self.keypoints_labelled} labelled (visibility 1 or 2)")
        lines.append("box size histogram (sqrt of relative area):")
        peak = max((n for _, n in self.histogram()), default=0) or 1
        for label, n in self.histogram():
            lines.append(f"  {label}: {n:>6} {'#' * int(round(40 * n / peak))}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} corrupt record(s) / image(s)")
        return "\n".join(lines)


def iter_examples(
    pattern: str | Sequence[str], *, skip_corrupt: bool = False, ignore_unsupported: bool = False,
    on_skip: Callable[[OdkitError], None] | None = None, label_map: Any = None,
) -> Iterator[RecordItem]:
    """Decoded examples of all files matched by ``pattern`` with their location."""
    paths = expand_paths(pattern)
    shard_of = {p: i for i, p in enumerate(paths)}
    for path, n, offset, data in iter_records_with_location(paths, skip_corrupt=skip_corrupt, on_skip=on_skip):
        where = f"{os.path.basename(path)}:record {n} (offset {offset})"
        try:
            ex = decode_detection_example(data, where=where, label_map=label_map,
                                          ignore_unsupported=ignore_unsupported, load_instance_masks=True,
                                          mask_type="AUTO")
        except DataError as exc:
            if not skip_corrupt:
                raise
            if on_skip is not None:
                on_skip(exc)
            continue
        yield RecordItem(path=path, shard=shard_of[path], index_in_shard=n, offset=offset, example=ex)


def _finite_or_none(v: float) -> float | None:
    """NaN / Inf box values (corrupt records) -> null, so ``--json`` stays valid JSON."""
    v = float(v)
    return v if np.isfinite(v) else None


def example_json(item: RecordItem) -> dict[str, Any]:
    ex = item.example
    return {
        "filename": ex.filename, "height": ex.height, "width": ex.width, "format": ex.format,
        "sha256": hashlib.sha256(ex.image).hexdigest(),
        "boxes": [[_finite_or_none(v) for v in row] for row in ex.boxes.tolist()],
        "labels": [int(v) for v in ex.labels.tolist()], "texts": list(ex.texts),
        "shard": item.shard, "index_in_shard": item.index_in_shard,
        **_keypoints_json(ex),
        **({"mask_pixels": [int(m.sum()) for m in ex.masks]} if ex.masks is not None else {}),
    }


def _keypoints_json(ex: DetectionExample) -> dict[str, Any]:
    """Keypoints per box as [[y, x], ...] (normalized, null when not finite), visibility, names."""
    if not ex.num_keypoints:
        return {}
    k = ex.num_keypoints
    return {
        "keypoints": [[[_finite_or_none(v) for v in pt] for pt in obj] for obj in ex.keypoints.tolist()],
        "keypoint_visibility": [[int(v) for v in obj] for obj in ex.keypoint_visibility.tolist()],
        "keypoint_names": ex.keypoint_texts[:k] if len(ex.keypoint_texts) >= k else [],
    }


def draw_example(ex: DetectionExample, names: dict[int, str] | None = None) -> Any:
    """A Pillow RGB image with the boxes and class names drawn (EXIF orientation not applied, like TF)."""
    img = decode_image_pil(ex.image, where=ex.filename, exif=False)
    if ex.masks is not None and ex.masks.shape[1:] == (img.height, img.width):
        img = draw_masks(img, list(ex.masks), ex.labels.tolist())
    img = draw_boxes(img, ex.boxes, ex.labels.tolist(), class_names=names, labels=list(ex.texts))
    if ex.num_keypoints:
        draw_keypoints(img, ex.keypoints, ex.keypoint_visibility > 0, ex.labels.tolist())
    return img


def save_image_atomic(img: Any, path: str) -> None:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    atomic_write_bytes(path, buf.getvalue())


def inspect_records(
    pattern: str | Sequence[str], *, as_json: bool = False, draw: int = 0, out_dir: str | None = None,
    skip_corrupt: bool = False, ignore_unsupported: bool = False, limit: int | None = None,
    stream: TextIO | None = None, err: TextIO | None = None,
) -> InspectStats:
    """Read all records; print JSON lines (``as_json``) or a summary; draw the first ``draw`` examples."""
    stream = stream or sys.stdout
    err = err or sys.stderr
    stats = InspectStats(files=expand_paths(pattern))
    if draw and not out_dir:
        raise OdkitError("--draw needs --out DIR")
    if draw and out_dir:
        os.makedirs(out_dir, exist_ok=True)

    def on_skip(exc: OdkitError) -> None:
        stats.skipped.append(exc.one_line())
        print(f"warning: skipped: {exc.one_line()}", file=err)

    drawn = 0
    for item in iter_examples(stats.files, skip_corrupt=skip_corrupt, ignore_unsupported=ignore_unsupported,
                              on_skip=on_skip):
        if limit is not None and stats.records >= limit:
            break
        stats.add(item)
        if as_json:
            stream.write(json.dumps(example_json(item), allow_nan=False) + "\n")
        if drawn < draw and out_dir:
            try:
                img = draw_example(item.example)
            except DataError as exc:
                if not skip_corrupt:
                    raise
                on_skip(exc)
                continue
            base = os.path.splitext(os.path.basename(item.example.filename or "image"))[0] or "image"
            save_image_atomic(img, os.path.join(out_dir, f"{drawn:04d}_{base}.jpg"))
            drawn += 1
    if not as_json:
        stream.write(stats.format() + "\n")
        if draw:
            stream.write(f"drew {drawn} image(s) into {out_dir}\n")
    return stats
