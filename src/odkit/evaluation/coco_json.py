"""COCO-format JSON files (groundtruth and detections) -> the arrays of odkit.evaluation.coco.

With ``keypoints=True`` every groundtruth annotation needs COCO ``keypoints`` ([x, y, v] * K; ``num_keypoints``
read when given, else the count of v > 0) and every detection ``keypoints`` ([x, y, score] * K); a detection
without ``bbox`` gets its keypoints' extent as box and area, as pycocotools' loadRes does.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from odkit.errors import DataError
from odkit.evaluation.coco import CocoDetections, CocoGroundtruth


def _load(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", where=str(p))
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"not valid JSON: {str(exc)[:200]}", where=str(p)) from None
    except RecursionError:
        raise DataError("JSON nested too deeply", where=str(p)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", where=str(p)) from None


def _box(value: Any, where: str) -> list[float]:
    if not isinstance(value, list | tuple) or len(value) != 4:
        raise DataError("bbox must be a list of 4 numbers [x, y, width, height]", where=where)
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        raise DataError("bbox must be a list of 4 numbers [x, y, width, height]", where=where) from None
    if not all(math.isfinite(v) for v in out):
        raise DataError("bbox has a non-finite number", where=where)
    return out


def _num(obj: dict, key: str, where: str, default: Any = None) -> float:
    v = obj.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise DataError(f"{key} must be a finite number, got {v!r}", where=f"{where}.{key}")
    return float(v)


def _keypoints(obj: dict, where: str, k: int | None) -> np.ndarray:
    """COCO ``keypoints`` [x1, y1, v1, ...] -> float64 [K, 3]; K must match ``k`` when given."""
    raw = obj.get("keypoints")
    if not isinstance(raw, list) or not raw or len(raw) % 3:
        raise DataError("keypoints must be a list of [x, y, v] triples", where=f"{where}.keypoints")
    try:
        arr = np.asarray([float(v) for v in raw], np.float64).reshape(-1, 3)
    except (TypeError, ValueError):
        raise DataError("keypoints must be numbers", where=f"{where}.keypoints") from None
    if not np.all(np.isfinite(arr)):
        raise DataError("keypoints have a non-finite number", where=f"{where}.keypoints")
    if k is not None and arr.shape[0] != k:
        raise DataError(f"{arr.shape[0]} keypoints, the others have {k}", where=f"{where}.keypoints")
    return arr


def _sort_key_table(ids: list[Any], where: str) -> dict[Any, int]:
    """Image id -> rank in sorted order (pycocotools evaluates images sorted by id)."""
    try:
        ordered = sorted(set(ids))
    except TypeError:
        raise DataError("image ids mix numbers and strings", where=where) from None
    return {k: i for i, k in enumerate(ordered)}


def load_coco_groundtruth(path: str | Path, keypoints: bool = False
                          ) -> tuple[CocoGroundtruth, dict[int, str], dict[Any, int]]:
    """(arrays, {category id: name}, {original image id: array image id})."""
    data = _load(path)
    where = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise DataError("not a COCO groundtruth file (no 'annotations' list)", where=where)
    images = data.get("images")
    cats = data.get("categories")
    if not isinstance(images, list) or not isinstance(cats, list):
        raise DataError("a COCO groundtruth file needs 'images' and 'categories' lists", where=where)
    try:
        img_ids = [im["id"] for im in images]
        names = {int(c["id"]): str(c.get("name", c["id"])) for c in cats}
    except (KeyError, TypeError, ValueError):
        raise DataError("every image and category needs an 'id'", where=where) from None
    table = _sort_key_table(img_ids, f"{where}:images")
    gi, gc, gb, ga, gcr, gk, gn = [], [], [], [], [], [], []
    for j, ann in enumerate(data["annotations"]):
        w = f"{where}:annotations[{j}]"
        if not isinstance(ann, dict):
            raise DataError("annotation is not an object", where=w)
        if ann.get("image_id") not in table:
            raise DataError(f"image_id {ann.get('image_id')!r} is not in 'images'", where=w)
        box = _box(ann.get("bbox"), f"{w}.bbox")
        gi.append(table[ann["image_id"]])
        gc.append(int(_num(ann, "category_id", w)))
        gb.append(box)
        ga.append(_num(ann, "area", w, box[2] * box[3]))
        gcr.append(bool(ann.get("iscrowd", 0)))
        if keypoints:
            gk.append(_keypoints(ann, w, gk[0].shape[0] if gk else None))
            gn.append(int(_num(ann, "num_keypoints", w, int((gk[-1][:, 2] > 0).sum()))))
    gb_arr = np.array(gb, dtype=np.float64).reshape(-1, 4)
    gt = CocoGroundtruth(np.array(gi, np.int64), np.array(gc, np.int64), gb_arr, np.array(ga, np.float64),
                         np.array(gcr, bool), np.arange(len(table), dtype=np.int64),
                         np.array(sorted(names), dtype=np.int64))
    if keypoints:
        gt.keypoints = np.stack(gk) if gk else np.zeros((0, 0, 3))
        gt.num_keypoints = np.array(gn, np.int64)
    return gt, names, table


def load_coco_detections(path: str | Path, image_table: dict[Any, int], keypoints: bool = False) -> CocoDetections:
    """A COCO results list ``[{image_id, category_id, bbox, score}, ...]`` (or {"annotations": [...]})."""
    data = _load(path)
    where = str(path)
    if isinstance(data, dict) and isinstance(data.get("annotations"), list):
        data = data["annotations"]
    if not isinstance(data, list):
        raise DataError("not a COCO detections file (expected a list of {image_id, category_id, bbox, score})",
                        where=where)
    di, dc, db, ds, dk, da = [], [], [], [], [], []
    for j, det in enumerate(data):
        w = f"{where}:[{j}]"
        if not isinstance(det, dict):
            raise DataError("detection is not an object", where=w)
        if det.get("image_id") not in image_table:
            raise DataError(f"image_id {det.get('image_id')!r} is not in the groundtruth images", where=w,
                            hint="detections must use the groundtruth file's image ids")
        di.append(image_table[det["image_id"]])
        dc.append(int(_num(det, "category_id", w)))
        ds.append(_num(det, "score", w))
        if keypoints:
            kp = _keypoints(det, w, dk[0].shape[0] if dk else None)
            dk.append(kp)
            if "bbox" not in det or det.get("bbox") == []:  # pycocotools loadRes: the keypoints' extent
                x0, y0 = kp[:, 0].min(), kp[:, 1].min()
                db.append([x0, y0, kp[:, 0].max() - x0, kp[:, 1].max() - y0])
                da.append(db[-1][2] * db[-1][3])
                continue
        db.append(_box(det.get("bbox"), f"{w}.bbox"))
        da.append(db[-1][2] * db[-1][3])
    dt = CocoDetections(np.array(di, np.int64), np.array(dc, np.int64),
                        np.array(db, np.float64).reshape(-1, 4), np.array(ds, np.float64))
    if keypoints:
        dt.keypoints = np.stack(dk) if dk else np.zeros((0, 0, 3))
        dt.areas = np.array(da, np.float64)
    return dt


def xywh_to_yxyx(boxes: np.ndarray) -> np.ndarray:
    """COCO [x, y, w, h] -> [ymin, xmin, ymax, xmax]."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 1], b[:, 0], b[:, 1] + b[:, 3], b[:, 0] + b[:, 2]], axis=1)
