"""Shared pieces of the dataset converters: summary, safe paths, image preparation, box clean-up, writing.

Messy inputs are handled on purpose and counted in the Summary:

* an image whose bytes are JPEG or PNG is kept byte for byte, ``image/format`` set to its TRUE format
  (a ``.jpg`` that is really a PNG is written as ``png``, counted ``format_mismatch``);
* any other format (GIF, BMP, WebP, TIFF) or pixel mode (CMYK, 16-bit, ...) is re-encoded to RGB JPEG
  (quality 95), ``image/format`` ``jpeg``, counted ``reencoded``; grayscale / RGBA / palette JPEG or PNG
  are kept (the decoders return RGB);
* corrupt or truncated images are skipped (``corrupt_image``), missing ones too (``missing_image``);
* boxes are clipped to the image (``boxes_clipped``), zero-area boxes dropped (``boxes_dropped_zero_area``),
  boxes of classes not in the label map dropped (``boxes_unknown_class``);
* an annotation naming a file outside the data folder raises DataError.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from odkit.data.example import encode_detection_example
from odkit.data.image_io import encode_jpeg, image_info, pil_to_rgb, sniff_format
from odkit.data.label_map import LabelMap, write_label_map
from odkit.data.tfrecord import ShardedWriter
from odkit.errors import DataError, processing
from odkit.fileio import check_output_file, safe_path, temp_name

KEEP_MODES = {"RGB", "L", "RGBA", "LA", "P", "1"}
Log = Callable[[str], None]


def stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass
class SplitSummary:
    name: str
    pattern: str
    examples: int = 0
    boxes: int = 0
    shard_counts: list[int] = field(default_factory=list)


@dataclass
class Summary:
    """What a converter wrote and skipped (and why)."""

    splits: dict[str, SplitSummary] = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    label_map_path: str | None = None
    num_classes: int = 0
    class_boxes: Counter[str] = field(default_factory=Counter)

    @property
    def written(self) -> int:
        return sum(s.examples for s in self.splits.values())

    def skip(self, reason: str, detail: str, log: Log | None = None) -> None:
        self.skipped[reason] += 1
        self.warn(f"skipped ({reason}): {detail}", log)

    def warn(self, msg: str, log: Log | None = None) -> None:
        self.warnings.append(msg)
        if log is not None and len(self.warnings) <= 20:
            log(f"warning: {msg}")
        elif log is not None and len(self.warnings) == 21:
            log("warning: (more warnings not shown; see the summary counts)")

    def as_dict(self) -> dict[str, object]:
        return {
            "written": self.written,
            "splits": {k: {"pattern": s.pattern, "examples": s.examples, "boxes": s.boxes,
                           "shard_counts": s.shard_counts} for k, s in self.splits.items()},
            "skipped": dict(self.skipped),
            "notes": dict(self.notes),
            "label_map_path": self.label_map_path,
            "num_classes": self.num_classes,
        }

    def format(self) -> str:
        lines = []
        for s in self.splits.values():
            lines.append(f"{s.name}: wrote {s.examples} examples ({s.boxes} boxes) to {s.pattern}")
        if self.skipped:
            lines.append("skipped: " + ", ".join(f"{v} {k}" for k, v in sorted(self.skipped.items())))
        else:
            lines.append("skipped: none")
        if self.notes:
            lines.append("notes: " + ", ".join(f"{v} {k}" for k, v in sorted(self.notes.items())))
        if self.label_map_path:
            lines.append(f"label map: {self.label_map_path} ({self.num_classes} classes)")
        return "\n".join(lines)


def dataset_file(base: str, name: str, where: str, what: str = "image file") -> str:
    """``base/name`` through :func:`odkit.fileio.safe_path` (no escape by ``..``, absolute paths or symlinks):
    the one path resolution for every file a dataset's annotations name."""
    return os.fspath(safe_path(base, name, what=what, where=where))


@dataclass
class PreparedImage:
    data: bytes
    format: str
    height: int
    width: int
    sha256: str


def prepare_image(path: str, summary: Summary, where: str | None = None) -> PreparedImage:
    """Read an image file and apply the format policy (see module docstring). Raises DataError if unreadable."""
    where = where or path
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as exc:
        raise DataError("image file not found", where=where) from exc
    except OSError as exc:
        raise DataError(f"cannot read image ({exc.strerror})", where=where) from exc
    if not data:
        raise DataError("image file is empty", where=where)
    info = image_info(data, where=where, check=True)
    fmt = sniff_format(data) or info["format"]
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    ext_fmt = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "bmp": "bmp", "webp": "webp"}.get(ext)
    if ext_fmt and ext_fmt != fmt:
        summary.notes["format_mismatch"] += 1
        summary.warn(f"{where}: file is {fmt.upper()} although named .{ext}")
    if info["mode"] == "L" or info["mode"] == "1":
        summary.notes["grayscale"] += 1
    if fmt in ("jpeg", "png") and info["mode"] in KEEP_MODES:
        return PreparedImage(data, fmt, info["height"], info["width"], hashlib.sha256(data).hexdigest())
    import io

    from PIL import Image, ImageSequence

    img = Image.open(io.BytesIO(data))
    first = next(iter(ImageSequence.Iterator(img)))
    jpeg = encode_jpeg(pil_to_rgb(first.copy()))
    summary.notes["reencoded"] += 1
    summary.warn(f"{where}: {fmt} / {info['mode']} re-encoded to RGB JPEG")
    return PreparedImage(jpeg, "jpeg", info["height"], info["width"], hashlib.sha256(jpeg).hexdigest())


@dataclass
class SourceObject:
    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: int = 0
    truncated: int = 0
    pose: str = "Unspecified"
    is_crowd: int = 0
    keypoints: np.ndarray | None = None  # float64 [K, 3] pixel (x, y, visibility), COCO's triples
    area: float | None = None  # COCO's annotation area (pixels; written as image/object/area, as TF)
    # instance mask: a function of the image's (height, width) -> uint8 [H, W] 0/1 (COCO polygons / RLE,
    # VOC SegmentationObject); None: no mask (written as zeros when the image writes masks)
    mask: Callable[[int, int], np.ndarray] | None = None


@dataclass
class SourceImage:
    """One image to convert: file path, the name written to image/filename, declared size, pixel boxes."""

    path: str
    filename: str
    where: str
    width: int | None = None
    height: int | None = None
    objects: list[SourceObject] = field(default_factory=list)
    source_id: str | None = None  # default: the filename
    keypoint_names: tuple[str, ...] | None = None  # set when the dataset has keypoints (every object has K)
    with_masks: bool = False  # write image/object/mask (PNG) for every object


def clean_boxes(
    objects: Sequence[SourceObject], width: int, height: int, summary: Summary, where: str
) -> list[tuple[SourceObject, np.ndarray]]:
    """Clip pixel boxes to the image, drop zero-area ones; returns (object, normalized yxyx)."""
    out = []
    for o in objects:
        vals = np.array([o.ymin, o.xmin, o.ymax, o.xmax], np.float64)
        if not np.all(np.isfinite(vals)):
            summary.notes["boxes_dropped_zero_area"] += 1
            summary.warn(f"{where}: non-finite box dropped")
            continue
        clipped = np.array([min(max(vals[0], 0), height), min(max(vals[1], 0), width),
                            min(max(vals[2], 0), height), min(max(vals[3], 0), width)])
        if not np.array_equal(clipped, vals):
            summary.notes["boxes_clipped"] += 1
        if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
            summary.notes["boxes_dropped_zero_area"] += 1
            summary.warn(f"{where}: zero-area box {vals.tolist()} dropped")
            continue
        norm = clipped / np.array([height, width, height, width], np.float64)
        out.append((o, norm.astype(np.float32)))
    return out


def output_prefix(output_path: str, split: str | None) -> str:
    """``out/x.record`` + ``train`` -> ``out/x_train.record``; without an extension -> ``out/x_train``."""
    if split is None:
        return output_path
    base, ext = os.path.splitext(output_path)
    if ext in (".record", ".tfrecord", ".records", ".tfrecords"):
        return f"{base}_{split}{ext}"
    return f"{output_path}_{split}"


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle 0..n-1 with ``seed`` and split; the val part has ``round(n * val_fraction)`` items."""
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"--val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(n))
    random.Random(seed).shuffle(order)
    num_val = int(round(n * val_fraction))
    return sorted(order[num_val:]), sorted(order[:num_val])


def derive_label_map(images: Iterable[SourceImage]) -> LabelMap:
    names = sorted({o.name for im in images for o in im.objects})
    if not names:
        raise DataError("no annotated objects found, cannot build a label map", hint="pass --label_map_path")
    return LabelMap.from_names(names)


def encode_source_image(
    im: SourceImage, label_map: LabelMap, summary: Summary, log: Log | None
) -> tuple[bytes, int, list[str]] | None:
    """Serialized tf.Example for one source image, or None if skipped (counted)."""
    if not os.path.isfile(im.path):
        summary.skip("missing_image", f"{im.where}: image {im.path} not found", log)
        return None
    try:
        prep = prepare_image(im.path, summary, where=im.path)
    except DataError as exc:
        summary.skip("corrupt_image", exc.one_line(), log)
        return None
    if (im.width and im.width != prep.width) or (im.height and im.height != prep.height):
        summary.notes["size_mismatch"] += 1
        summary.warn(f"{im.where}: annotated size {im.width}x{im.height} differs from the image "
                     f"{prep.width}x{prep.height}; boxes normalized by the image size")
    kept = []
    for o in im.objects:
        if o.name not in label_map.name_to_id:
            summary.notes["boxes_unknown_class"] += 1
            summary.warn(f"{im.where}: class {o.name!r} not in the label map, box dropped")
            continue
        kept.append(o)
    cleaned = clean_boxes(kept, prep.width, prep.height, summary, im.where)
    boxes = np.stack([b for _, b in cleaned]) if cleaned else np.zeros((0, 4), np.float32)
    objs = [o for o, _ in cleaned]
    if not objs:
        summary.notes["images_without_boxes"] += 1
    kp: dict[str, object] = {}
    if im.keypoint_names is not None:
        kp = _keypoint_args(objs, im.keypoint_names, prep.width, prep.height)
        summary.notes["keypoints_labelled"] += int((kp["keypoint_visibility"] > 0).sum())  # type: ignore[operator]
    if im.with_masks:
        try:
            kp["masks"] = _object_masks(objs, prep.height, prep.width, summary, im.where)
        except DataError as exc:
            summary.skip("bad_mask", exc.one_line(), log)
            return None
    data = encode_detection_example(
        prep.data, format=prep.format, height=prep.height, width=prep.width, filename=im.filename,
        source_id=im.source_id or im.filename, sha256=prep.sha256, boxes=boxes,
        labels=[label_map.name_to_id[o.name] for o in objs], texts=[o.name for o in objs],
        difficult=[o.difficult for o in objs], truncated=[o.truncated for o in objs],
        view=[o.pose for o in objs], is_crowd=[o.is_crowd for o in objs] if any(o.is_crowd for o in objs) else None,
        area=[o.area for o in objs] if objs and all(o.area is not None for o in objs) else None,
        **kp,  # type: ignore[arg-type]
    )
    return data, len(objs), [o.name for o in objs]


def _object_masks(objs: Sequence[SourceObject], height: int, width: int, summary: Summary, where: str
                  ) -> np.ndarray:
    """uint8 [N, height, width] masks of the kept objects (zeros for objects without one, counted)."""
    out = np.zeros((len(objs), height, width), np.uint8)
    for i, o in enumerate(objs):
        if o.mask is None:
            summary.notes["objects_without_mask"] += 1
            continue
        m = np.asarray(o.mask(height, width))
        if m.shape != (height, width):
            raise DataError(f"mask is {m.shape[1] if m.ndim == 2 else '?'}x{m.shape[0]}, the image "
                            f"{width}x{height}", where=where)
        out[i] = m > 0
    summary.notes["masks_written"] += len(objs)
    return out


def _keypoint_args(objs: Sequence[SourceObject], names: tuple[str, ...], width: int, height: int
                   ) -> dict[str, object]:
    """Keypoint arguments of encode_detection_example: pixel (x, y, v) -> normalized (y, x) + visibility, as
    TF's create_coco_tf_record.py (x / width, y / height, not clipped; objects without keypoints get K
    zeros with visibility 0)."""
    k = len(names)
    pts = np.zeros((len(objs), k, 2), np.float32)
    vis = np.zeros((len(objs), k), np.int64)
    for i, o in enumerate(objs):
        if o.keypoints is None:
            continue
        pts[i, :, 0] = o.keypoints[:, 1] / height
        pts[i, :, 1] = o.keypoints[:, 0] / width
        vis[i] = o.keypoints[:, 2].astype(np.int64)
    return {"keypoints": pts, "keypoint_visibility": vis, "keypoint_texts": list(names)}


def fill_split(
    name: str, images: Sequence[SourceImage], w: ShardedWriter, label_map: LabelMap, summary: Summary,
    log: Log | None,
) -> SplitSummary:
    """Encode ``images`` into ``w`` (image i -> shard i % N); nothing is published here."""
    split = SplitSummary(name=name, pattern=w.pattern)
    for i, im in enumerate(images):
        if log is not None and i and i % 500 == 0:
            log(f"{name}: {i} / {len(images)} images")
        with processing(im.where):
            res = encode_source_image(im, label_map, summary, log)
        if res is None:
            continue
        w.write(res[0], index=i)
        split.examples += 1
        split.boxes += res[1]
        for cls in res[2]:
            summary.class_boxes[cls] += 1
    split.shard_counts = list(w.counts)
    summary.splits[name] = split
    return split


def check_written(summary: Summary, label_map: LabelMap, log: Log | None) -> None:
    """Zero examples or zero boxes overall is an error (with what to check); a class with no box a warning."""
    skipped = ", ".join(f"{v} {k}" for k, v in sorted(summary.skipped.items())) or "none"
    if summary.written == 0:
        raise DataError(f"no examples written: every image was skipped (skipped: {skipped})",
                        hint="check the image paths and the label map; nothing was written")
    if sum(s.boxes for s in summary.splits.values()) == 0:
        unknown = summary.notes.get("boxes_unknown_class", 0)
        raise DataError(f"{summary.written} examples but 0 boxes: no annotated object was kept "
                        f"({unknown} had a class not in the label map of {label_map.num_classes} classes)",
                        hint="check that the label map's names match the class names in the annotations; "
                             "nothing was written")
    missing = [n for n in label_map.names if summary.class_boxes.get(n, 0) == 0]
    if missing:
        summary.warn(f"{len(missing)} label-map class(es) have no boxes: {', '.join(missing[:10])}"
                     + (" ..." if len(missing) > 10 else ""), log)


def write_dataset(
    images: Sequence[SourceImage], *, output_path: str, label_map: LabelMap | None, num_shards: int = 1,
    val_fraction: float = 0.0, seed: int = 42, label_map_output_path: str | None = None,
    summary: Summary | None = None, log: Log | None = stderr_log,
) -> Summary:
    """Write a converted dataset (optionally split train/val) and a label map when none was given.

    All outputs (every shard of every split, and the label map) are written to temporary names first and
    renamed into place together at the end, only when the data holds at least one box.
    """
    summary = summary or Summary()
    if num_shards < 1:
        raise DataError(f"--num_shards must be >= 1, got {num_shards}")
    if not math.isfinite(val_fraction):
        raise DataError(f"--val_fraction must be a number in [0, 1), got {val_fraction}")
    check_output_file(output_path, "--output_path")
    derived = label_map is None
    lm_out = None
    if derived:
        lm_out = label_map_output_path or os.path.join(os.path.dirname(os.path.abspath(output_path)),
                                                       "label_map.pbtxt")
        check_output_file(lm_out, "--label_map_output_path")
    lm = derive_label_map(images) if label_map is None else label_map
    if val_fraction > 0:
        tr, va = split_indices(len(images), val_fraction, seed)
        parts = [("train", [images[i] for i in tr]), ("val", [images[i] for i in va])]
    else:
        split_indices(len(images), val_fraction, seed)  # validates the fraction
        parts = [("all", list(images))]
    writers: list[ShardedWriter] = []
    lm_tmp = None
    try:
        for name, ims in parts:
            w = ShardedWriter(output_prefix(output_path, None if name == "all" else name), num_shards)
            writers.append(w)
            fill_split(name, ims, w, lm, summary, log)
            w.finish()
        check_written(summary, lm, log)
        if lm_out is not None:
            lm_tmp = temp_name(lm_out)
            write_label_map(lm, lm_tmp)
        for w in writers:  # all or nothing across splits and the label map
            w.publish()
        if lm_out is not None and lm_tmp is not None:
            os.replace(lm_tmp, lm_out)
    except BaseException:
        for w in writers:
            w.abort()
        if lm_tmp is not None and os.path.exists(lm_tmp):
            os.remove(lm_tmp)
        raise
    summary.label_map_path = lm_out if derived else lm.path
    summary.num_classes = lm.num_classes
    return summary
