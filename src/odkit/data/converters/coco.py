"""COCO instances JSON + image folder -> sharded TFRecords.

``bbox`` is ``[x, y, width, height]`` in pixels; ``iscrowd`` is written as ``image/object/is_crowd``
(as TF's create_coco_tf_record.py). The class of a box is its category's name, or with ``class_key`` the
image entry's field of that name (e.g. ``breed`` for a single-category file that tags images).
Images without annotations are written with no boxes. ``image/filename`` is the JSON's ``file_name``,
``image/source_id`` the image id (as TF's converter).
Keypoints (COCO person keypoints): when a category names its ``keypoints``, every object gets K keypoints
``image/object/keypoint/{x,y,visibility,text,num}`` from the annotation's ``keypoints`` triples
(x, y, v in pixels; objects without them get zeros with visibility 0), as TF's create_coco_tf_record.py,
and the written label map lists them (``keypoints { id label }``).
Label map when none is given: with ``class_key``, the sorted names (ids 1..N); otherwise the categories,
keeping COCO ids when they are all >= 1, else renumbered 1..N in id order.
With ``include_masks`` (CLI ``--include_masks``, TF's flag) each annotation's ``segmentation`` (polygons,
uncompressed or compressed RLE, decoded with pycocotools' mask API from faster-coco-eval) is written as a PNG
``image/object/mask``.
"""

from __future__ import annotations

import functools
import json
import math
import os
from typing import Any

import numpy as np

from odkit.data.converters.common import (
    Log,
    SourceImage,
    SourceObject,
    Summary,
    dataset_file,
    derive_label_map,
    stderr_log,
    write_dataset,
)
from odkit.data.label_map import LabelMap, load_label_map
from odkit.errors import DataError


def _load_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError as exc:
        raise DataError("COCO annotations file not found", where=path) from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"malformed JSON ({exc.msg})", where=f"{path}:{exc.lineno}:{exc.colno}") from exc
    except UnicodeDecodeError as exc:
        raise DataError("annotations file is not UTF-8 text", where=path) from exc
    except RecursionError:
        raise DataError("JSON nested too deeply", where=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the annotations file ({exc.strerror or exc})", where=path) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataError("not a COCO instances file (no 'images' list)", where=path)
    return data


def _dim(img: dict[str, Any], key: str, where: str) -> int | None:
    value = img.get(key)
    if value in (None, "", 0):
        return None
    try:
        f = float(value)
        if not math.isfinite(f) or f < 0 or isinstance(value, bool):
            raise ValueError
        return int(f)
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"image {key} {str(value)[:40]!r} is not a non-negative number", where=where) from None


def _keypoint_names(categories: list[Any], where: str) -> tuple[dict[int, tuple[str, ...]], tuple[str, ...] | None]:
    """Per category id its keypoint names, and the dataset's names (None without keypoints); one K for all."""
    per_cat: dict[int, tuple[str, ...]] = {}
    for c in categories:
        names = c.get("keypoints") if isinstance(c, dict) else None
        if names is None:
            continue
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError(f"category {str(c.get('id'))[:20]} has 'keypoints' {str(names)[:60]}, expected a "
                            "list of names", where=where)
        per_cat[int(c["id"])] = tuple(names)
    sizes = {len(v) for v in per_cat.values() if v}
    if len(sizes) > 1:
        raise DataError(f"categories name different numbers of keypoints ({sorted(sizes)})", where=where,
                        hint="a TFRecord holds one keypoint count per object; convert one category at a time")
    first = next((v for v in per_cat.values() if v), None)
    return per_cat, first


def _annotation_keypoints(a: dict[str, Any], k: int, where: str) -> np.ndarray | None:
    """COCO ``keypoints`` [x1, y1, v1, ...] -> float64 [K, 3], checked."""
    raw = a.get("keypoints")
    if raw is None:
        return None
    if not isinstance(raw, list) or len(raw) != 3 * k:
        raise DataError(f"annotation {str(a.get('id'))[:20]} has {len(raw) if isinstance(raw, list) else raw!r} "
                        f"keypoint values, expected {3 * k} (x, y, v for {k} keypoints)", where=where)
    try:
        arr = np.asarray([float(v) for v in raw], np.float64).reshape(k, 3)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DataError(f"annotation {str(a.get('id'))[:20]} has non-numeric keypoints", where=where) from exc
    if not np.all(np.isfinite(arr)) or not np.all(np.isin(arr[:, 2], (0, 1, 2))):
        raise DataError(f"annotation {str(a.get('id'))[:20]} has keypoints that are not finite or a visibility "
                        "outside 0, 1, 2", where=where)
    return arr


def coco_segmentation_mask(segm: Any, height: int, width: int, where: str) -> np.ndarray:
    """A COCO ``segmentation`` (polygon list, uncompressed RLE or compressed RLE) -> uint8 [H, W] 0/1, as
    pycocotools' annToMask (TF create_coco_tf_record.py include_masks: frPyObjects, decode, any part)."""
    from faster_coco_eval.core import mask as mask_api

    try:
        if isinstance(segm, list):
            polys = [[float(v) for v in p] for p in segm if isinstance(p, list) and len(p) >= 6]
            if not polys:
                return np.zeros((height, width), np.uint8)
            rle = mask_api.merge(mask_api.frPyObjects(polys, height, width))
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), list):
            if [int(v) for v in segm.get("size", [])] != [height, width]:
                raise DataError(f"RLE size {segm.get('size')} differs from the image {height}x{width}", where=where)
            rle = mask_api.frPyObjects(segm, height, width)
        elif isinstance(segm, dict) and isinstance(segm.get("counts"), (str, bytes)):
            if [int(v) for v in segm.get("size", [])] != [height, width]:
                raise DataError(f"RLE size {segm.get('size')} differs from the image {height}x{width}", where=where)
            rle = {"size": [height, width], "counts": segm["counts"]}
        else:
            raise DataError(f"segmentation {str(segm)[:60]} is neither polygons nor RLE", where=where)
        m = np.asarray(mask_api.decode(rle))
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - the mask API raises assorted errors on malformed input
        raise DataError(f"bad segmentation ({type(exc).__name__}: {str(exc)[:120]})", where=where) from None
    if m.ndim == 3:
        m = m.max(axis=2)
    return (m > 0).astype(np.uint8)


def _area(a: dict[str, Any]) -> float | None:
    """The annotation's ``area`` when it is a finite non-negative number (TF writes it as image/object/area)."""
    v = a.get("area")
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        return None
    return float(v)


def collect_coco(annotations_file: str, image_dir: str, class_key: str | None = None, include_masks: bool = False
                 ) -> tuple[list[SourceImage], list[tuple[int, str]], dict[int, tuple[str, ...]]]:
    """SourceImages in the order of the JSON's images, the (id, name) categories and their keypoint names.
    ``include_masks``: every object carries its ``segmentation`` as a mask (TF's --include_masks)."""
    data = _load_json(annotations_file)
    cats: list[tuple[int, str]] = []
    cat_names: dict[int, str] = {}
    for key in ("categories", "annotations"):
        if data.get(key) is not None and not isinstance(data.get(key), list):
            raise DataError(f"'{key}' must be a list, got {type(data[key]).__name__}", where=annotations_file)
    for c in data.get("categories", []) or []:
        try:
            cats.append((int(c["id"]), str(c["name"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad category entry {c!r}", where=annotations_file) from exc
        cat_names[cats[-1][0]] = cats[-1][1]
    kp_per_cat, kp_names = _keypoint_names(data.get("categories", []) or [], annotations_file)
    if kp_names is None and any(isinstance(a, dict) and a.get("keypoints")
                                for a in data.get("annotations", []) or []):
        raise DataError("annotations have 'keypoints' but no category names them (categories[].keypoints)",
                        where=annotations_file, hint="add the keypoint names to the category, as COCO does")
    by_image: dict[Any, list[dict[str, Any]]] = {}
    for a in data.get("annotations", []) or []:
        if not isinstance(a, dict) or "image_id" not in a:
            raise DataError(f"annotation without image_id: {str(a)[:80]}", where=annotations_file)
        if not isinstance(a["image_id"], (int, str)) or isinstance(a["image_id"], bool):
            raise DataError(f"annotation {str(a.get('id'))[:20]} has image_id {str(a['image_id'])[:40]}, "
                            "expected a number or string", where=annotations_file)
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for img in data["images"]:
        if not isinstance(img, dict) or "file_name" not in img or "id" not in img:
            raise DataError(f"image entry without id / file_name: {str(img)[:80]}", where=annotations_file)
        if not isinstance(img["id"], (int, str)) or isinstance(img["id"], bool):
            raise DataError(f"image id {str(img['id'])[:40]} must be a number or string", where=annotations_file)
        where = f"{annotations_file}:image id {str(img['id'])[:40]}"
        width, height = _dim(img, "width", where), _dim(img, "height", where)
        file_name = str(img["file_name"])
        path = dataset_file(image_dir, file_name, where=where)
        objects = []
        for a in by_image.get(img["id"], []):
            bbox = a.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise DataError(f"annotation {a.get('id')} has bbox {bbox!r}, expected [x, y, w, h]", where=where)
            try:
                x, y, w, h = (float(v) for v in bbox)
            except (TypeError, ValueError, OverflowError) as exc:
                raise DataError(f"annotation {a.get('id')} has a non-numeric bbox {bbox!r}", where=where) from exc
            if class_key:
                if class_key not in img:
                    raise DataError(f"image entry has no {class_key!r} field (--class_key)", where=where)
                name = str(img[class_key])
            else:
                cid = a.get("category_id")
                if cid not in cat_names:
                    raise DataError(f"annotation {a.get('id')} has unknown category_id {cid!r}", where=where)
                name = cat_names[cid]
            kps = _annotation_keypoints(a, len(kp_names), where) if kp_names else None
            mask = None
            if include_masks and a.get("segmentation") is not None:
                segm, swhere = a["segmentation"], f"{where}: annotation {str(a.get('id'))[:20]}"
                mask = functools.partial(_mask_fn, segm, swhere)
            objects.append(SourceObject(name=name, xmin=x, ymin=y, xmax=x + w, ymax=y + h,
                                        is_crowd=int(bool(a.get("iscrowd", 0))), keypoints=kps,
                                        area=_area(a), mask=mask))
        out.append(SourceImage(path=path, filename=file_name, source_id=str(img["id"]), where=where,
                               width=width, height=height, objects=objects, keypoint_names=kp_names,
                               with_masks=include_masks))
    return out, cats, kp_per_cat


def _mask_fn(segm: Any, where: str, height: int, width: int) -> np.ndarray:
    return coco_segmentation_mask(segm, height, width, where)


def coco_label_map(cats: list[tuple[int, str]], keypoint_names: dict[int, tuple[str, ...]] | None = None
                   ) -> LabelMap:
    """The categories as a label map; categories naming keypoints list them (``keypoints { id label }``)."""
    cats = sorted(cats)
    kp = keypoint_names or {}
    if cats and all(i >= 1 for i, _ in cats) and len({i for i, _ in cats}) == len(cats):
        kps = tuple(tuple(enumerate(kp.get(i, ()))) for i, _ in cats)
        return LabelMap(ids=tuple(i for i, _ in cats), names=tuple(n for _, n in cats),
                        display_names=tuple(n for _, n in cats), keypoints=kps if any(kps) else ())
    lm = LabelMap.from_names(dict.fromkeys(n for _, n in cats))
    by_name = {n: kp[i] for i, n in cats if i in kp}
    kps = tuple(tuple(enumerate(by_name.get(n, ()))) for n in lm.names)
    return LabelMap(lm.ids, lm.names, lm.display_names, keypoints=kps if any(kps) else ())


def create_coco_tfrecord(
    annotations_file: str, image_dir: str, output_path: str, *, label_map_path: str | None = None,
    class_key: str | None = None, num_shards: int = 1, val_fraction: float = 0.0, seed: int = 42,
    label_map_output_path: str | None = None, include_masks: bool = False, log: Log | None = stderr_log,
) -> Summary:
    if not os.path.isdir(image_dir):
        raise DataError("image folder not found", where=image_dir)
    images, cats, kp_per_cat = collect_coco(annotations_file, image_dir, class_key, include_masks)
    if label_map_path:
        label_map: LabelMap | None = load_label_map(label_map_path)
    elif class_key or not cats:
        label_map = derive_label_map(images)
    else:
        label_map = coco_label_map(cats, kp_per_cat)
    summary = write_dataset(images, output_path=output_path, label_map=label_map, num_shards=num_shards,
                            val_fraction=val_fraction, seed=seed, log=log)
    if not label_map_path:
        from odkit.data.label_map import write_label_map

        out = label_map_output_path or os.path.join(os.path.dirname(os.path.abspath(output_path)), "label_map.pbtxt")
        write_label_map(label_map, out)  # type: ignore[arg-type]
        summary.label_map_path = out
    return summary
