"""tf.train.Example <-> DetectionExample for the TF OD API feature keys.

Keys (as written by the TF OD API's dataset_tools): ``image/encoded``, ``image/format``, ``image/height``,
``image/width``, ``image/filename``, ``image/source_id``, ``image/key/sha256``,
``image/object/bbox/{ymin,xmin,ymax,xmax}`` (normalized floats), ``image/object/class/{label,text}``,
``image/object/{difficult,truncated,group_of,weight,view,is_crowd,area}``,
``image/object/keypoint/{x,y,visibility,text,num}`` (keypoints flattened per object, M*K normalized floats;
visibility in the COCO convention 0 unlabelled, 1 labelled not visible, 2 visible),
``image/object/mask`` (instance masks, read with ``load_instance_masks``: one PNG string per object,
mask_type PNG_MASKS, or N*H*W dense floats, NUMERICAL_MASKS; values > 0 are the object, as TF's decoder).
Keypoint depths and DensePose are not supported: their presence raises UnsupportedError unless
``ignore_unsupported``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError

from odkit.errors import DataError, UnsupportedError
from odkit.protos import example_pb2

BOX_KEYS = ("image/object/bbox/ymin", "image/object/bbox/xmin", "image/object/bbox/ymax", "image/object/bbox/xmax")
MASK_KEY = "image/object/mask"
UNSUPPORTED_PREFIXES = (
    "image/object/keypoint/z",
    "image/object/densepose/",
    "image/segmentation/",
    "image/object/track/",
    "image/context_features",
)


@dataclass
class DetectionExample:
    """One decoded detection example. Boxes are [ymin, xmin, ymax, xmax] normalized to the image."""

    image: bytes
    format: str = "jpeg"
    height: int = 0
    width: int = 0
    filename: str = ""
    source_id: str = ""
    sha256: str = ""
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    texts: list[str] = field(default_factory=list)
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    truncated: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    group_of: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    view: list[str] = field(default_factory=list)
    is_crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    area: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))  # [N] pixels, or [] if absent
    # keypoints: float32 [N, K, 2] (y, x) normalized as stored (K = 0 when the record has none);
    # keypoint_visibility: int64 [N, K] (0 unlabelled, 1 labelled not visible, 2 visible; TF's default when
    # the record has no visibility: 2 for finite coordinates, 0 for NaN); keypoint_texts: N*K names or [].
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), np.float32))
    keypoint_visibility: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    keypoint_texts: list[str] = field(default_factory=list)
    # masks: uint8 [N, height, width] 0/1 when decoded with load_instance_masks, else None
    masks: np.ndarray | None = None

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1]) if self.keypoints.ndim == 3 else 0

    @property
    def num_boxes(self) -> int:
        return int(self.boxes.shape[0])

    def select(self, keep: np.ndarray) -> DetectionExample:
        """A copy keeping only the boxes where ``keep`` (bool [N]) is true."""
        keep = np.asarray(keep, dtype=bool)
        idx = np.nonzero(keep)[0]
        return DetectionExample(
            image=self.image, format=self.format, height=self.height, width=self.width,
            filename=self.filename, source_id=self.source_id, sha256=self.sha256,
            boxes=self.boxes[idx], labels=self.labels[idx], texts=[self.texts[i] for i in idx] if self.texts else [],
            difficult=self.difficult[idx], truncated=self.truncated[idx], group_of=self.group_of[idx],
            weights=self.weights[idx], view=[self.view[i] for i in idx] if self.view else [],
            is_crowd=self.is_crowd[idx], area=self.area[idx] if len(self.area) == self.num_boxes else self.area,
            keypoints=self.keypoints[idx] if self.num_keypoints else
            np.zeros((len(idx), 0, 2), np.float32),
            keypoint_visibility=self.keypoint_visibility[idx] if self.num_keypoints else
            np.zeros((len(idx), 0), np.int64),
            keypoint_texts=[t for i in idx for t in self.keypoint_texts[i * self.num_keypoints:
                                                                         (i + 1) * self.num_keypoints]]
            if len(self.keypoint_texts) == self.num_boxes * self.num_keypoints else [],
            masks=None if self.masks is None else self.masks[idx],
        )


def _bytes(f: Any) -> list[bytes]:
    return list(f.bytes_list.value)


def _floats(f: Any) -> list[float]:
    return list(f.float_list.value)


def _ints(f: Any) -> list[int]:
    return list(f.int64_list.value)


def parse_example(data: bytes, where: str | None = None) -> example_pb2.Example:
    """Parse a serialized tf.train.Example; DataError if it is not one."""
    ex = example_pb2.Example()
    try:
        ex.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as exc:
        raise DataError(f"record is not a tf.Example ({exc})", where=where) from exc
    return ex


def decode_detection_example(
    data: bytes,
    *,
    where: str | None = None,
    label_map: Any = None,
    ignore_unsupported: bool = False,
    num_keypoints: int | None = None,
    load_instance_masks: bool = False,
    mask_type: str = "NUMERICAL_MASKS",
) -> DetectionExample:
    """Serialized tf.Example -> DetectionExample.

    Masks: with ``load_instance_masks``, ``image/object/mask`` is decoded as ``mask_type`` (PNG_MASKS or
    NUMERICAL_MASKS, the input reader's; "AUTO": as stored, None without masks) into uint8 [N, height,
    width]; a record without masks gets N zero masks only when it has no boxes, else DataError (TF would fail
    later too).

    Keypoints: with ``num_keypoints`` (the input reader's), the keypoint lists must hold N * num_keypoints
    values (DataError otherwise); without it, K is inferred as len / N.

    With ``label_map`` (a LabelMap), class labels come from ``image/object/class/text`` looked up by name
    when texts are present (unknown names -> -1), else from ``image/object/class/label``, like the TF OD
    API's TfExampleDecoder with ``label_map_proto_file``.
    """
    ex = parse_example(data, where)
    feats = ex.features.feature
    if "image/encoded" not in feats:
        raise DataError("record is not a detection tf.Example (no image/encoded feature)", where=where)
    if not ignore_unsupported:
        bad = sorted(k for k in feats if k.startswith(UNSUPPORTED_PREFIXES))
        if bad:
            raise UnsupportedError(
                f"example has {', '.join(bad)}: masks / keypoint depths / DensePose are not supported by odkit",
                where=where, hint="pass ignore_unsupported / --ignore_unsupported to skip these features",
            )

    def get(key: str) -> Any:
        return feats[key] if key in feats else None

    def one_bytes(key: str, default: str = "") -> str:
        f = get(key)
        if f is None or not f.bytes_list.value:
            return default
        return f.bytes_list.value[0].decode("utf-8", errors="replace")

    def one_int(key: str) -> int:
        f = get(key)
        return int(f.int64_list.value[0]) if f is not None and f.int64_list.value else 0

    image_list = feats["image/encoded"].bytes_list.value
    if len(image_list) != 1:
        raise DataError(f"image/encoded has {len(image_list)} values, expected 1", where=where)
    coords = [np.asarray(_floats(feats[k]) if k in feats else [], np.float32) for k in BOX_KEYS]
    n = len(coords[0])
    if any(len(c) != n for c in coords):
        sizes = ", ".join(f"{k.rsplit('/', 1)[1]}={len(c)}" for k, c in zip(BOX_KEYS, coords))
        raise DataError(f"bbox coordinate lists differ in length ({sizes})", where=where)
    boxes = np.stack(coords, axis=1) if n else np.zeros((0, 4), np.float32)

    texts = [t.decode("utf-8", errors="replace") for t in _bytes(feats["image/object/class/text"])] \
        if "image/object/class/text" in feats else []
    labels_raw = _ints(feats["image/object/class/label"]) if "image/object/class/label" in feats else []
    if label_map is not None and texts:
        labels = np.asarray([label_map.name_to_id.get(t, -1) for t in texts], np.int64)
    else:
        labels = np.asarray(labels_raw, np.int64)

    def per_box_int(key: str, default: int) -> np.ndarray:
        vals = _ints(feats[key]) if key in feats else []
        if not vals:
            return np.full((n,), default, np.int64)
        if len(vals) != n:
            raise DataError(f"{key} has {len(vals)} values for {n} boxes", where=where)
        return np.asarray(vals, np.int64)

    if len(labels) != n:
        raise DataError(f"image/object/class/label has {len(labels)} values for {n} boxes", where=where)
    if texts and len(texts) != n:
        raise DataError(f"image/object/class/text has {len(texts)} values for {n} boxes", where=where)
    weights_list = _floats(feats["image/object/weight"]) if "image/object/weight" in feats else []
    if weights_list and len(weights_list) != n:
        raise DataError(f"image/object/weight has {len(weights_list)} values for {n} boxes", where=where)
    weights = np.asarray(weights_list, np.float32) if weights_list else np.ones((n,), np.float32)
    view = [v.decode("utf-8", errors="replace") for v in _bytes(feats["image/object/view"])] \
        if "image/object/view" in feats else []

    keypoints, kp_vis, kp_texts = _decode_keypoints(feats, n, num_keypoints, where)
    masks = None
    if load_instance_masks:
        masks = decode_masks(feats, n, one_int("image/height"), one_int("image/width"), mask_type, where)
    return DetectionExample(
        masks=masks,
        image=bytes(image_list[0]),
        format=one_bytes("image/format", "jpeg").lower(),
        height=one_int("image/height"),
        width=one_int("image/width"),
        filename=one_bytes("image/filename"),
        source_id=one_bytes("image/source_id"),
        sha256=one_bytes("image/key/sha256"),
        boxes=boxes,
        labels=labels,
        texts=texts,
        difficult=per_box_int("image/object/difficult", 0),
        truncated=per_box_int("image/object/truncated", 0),
        group_of=per_box_int("image/object/group_of", 0),
        weights=weights,
        view=view if len(view) == n else [],
        is_crowd=per_box_int("image/object/is_crowd", 0),
        area=_per_box_floats(feats, "image/object/area", n, where),
        keypoints=keypoints,
        keypoint_visibility=kp_vis,
        keypoint_texts=kp_texts,
    )


def decode_masks(feats: Any, n: int, height: int, width: int, mask_type: str, where: str | None) -> np.ndarray:
    """``image/object/mask`` -> uint8 [n, height, width] 0/1 (TfExampleDecoder: PNG channels=1 > 0, or the
    dense floats reshaped to [-1, height, width] > 0)."""
    f = feats[MASK_KEY] if MASK_KEY in feats else None
    png = f is not None and len(f.bytes_list.value) > 0
    dense = f is not None and len(f.float_list.value) > 0
    if mask_type == "AUTO":  # records inspect: whatever the record holds, no masks -> None
        if not (png or dense):
            return None  # type: ignore[return-value]
        mask_type = "PNG_MASKS" if png else "NUMERICAL_MASKS"
    if n == 0 and not png and not dense:
        return np.zeros((0, height, width), np.uint8)
    if f is None or not (png or dense):
        raise DataError(f"record has {n} boxes but no {MASK_KEY}", where=where,
                         hint="write masks for every object or set load_instance_masks: false")
    if png != (mask_type == "PNG_MASKS"):
        found, other = ("PNG strings", "PNG_MASKS") if png else ("dense floats", "NUMERICAL_MASKS")
        raise DataError(f"{MASK_KEY} holds {found} but the input reader's mask_type is {mask_type}", where=where,
                         hint=f"set mask_type: {other} in the input reader")
    if png:
        from odkit.data.image_io import decode_mask_png

        out = [decode_mask_png(bytes(b), where) for b in f.bytes_list.value]
        bad = [m.shape for m in out if m.shape != (height, width)]
        if bad:
            raise DataError(f"a PNG mask is {bad[0][1]}x{bad[0][0]}, the image {width}x{height}", where=where)
        masks = np.stack(out) if out else np.zeros((0, height, width), np.uint8)
    else:
        values = np.asarray(f.float_list.value, np.float32)
        if height <= 0 or width <= 0 or values.size % (height * width):
            raise DataError(f"{MASK_KEY} has {values.size} floats, not a multiple of height x width "
                             f"{height}x{width}", where=where)
        masks = (values.reshape(-1, height, width) > 0).astype(np.uint8)
    if masks.shape[0] != n:
        raise DataError(f"{MASK_KEY} has {masks.shape[0]} masks for {n} boxes", where=where)
    return masks


def mask_features(masks: np.ndarray, mask_format: str = "png") -> dict[str, example_pb2.Feature]:
    """``image/object/mask`` for uint8/bool [N, H, W] masks: one 0/1 PNG per object (as TF's
    create_coco_tf_record.py) or, with mask_format "numerical", the N*H*W floats."""
    m = (np.asarray(masks) > 0).astype(np.uint8)
    if m.ndim != 3:
        raise ValueError(f"masks must be [N, H, W], got {list(m.shape)}")
    if mask_format == "numerical":
        return {MASK_KEY: float_feature(m.astype(np.float32).reshape(-1))}
    from odkit.data.image_io import encode_mask_png

    return {MASK_KEY: bytes_feature([encode_mask_png(x) for x in m])}


def _per_box_floats(feats: Any, key: str, n: int, where: str | None) -> np.ndarray:
    """A float per box, or an empty array when the record lacks the key."""
    vals = _floats(feats[key]) if key in feats else []
    if vals and len(vals) != n:
        raise DataError(f"{key} has {len(vals)} values for {n} boxes", where=where)
    return np.asarray(vals, np.float32)


KEYPOINT_X, KEYPOINT_Y = "image/object/keypoint/x", "image/object/keypoint/y"
KEYPOINT_VISIBILITY, KEYPOINT_TEXT = "image/object/keypoint/visibility", "image/object/keypoint/text"


def _decode_keypoints(feats: Any, n: int, num_keypoints: int | None, where: str | None
                      ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(keypoints [N, K, 2] yx, visibility [N, K] int64, texts) as TfExampleDecoder reads them."""
    x = np.asarray(_floats(feats[KEYPOINT_X]) if KEYPOINT_X in feats else [], np.float32)
    y = np.asarray(_floats(feats[KEYPOINT_Y]) if KEYPOINT_Y in feats else [], np.float32)
    if len(x) != len(y):
        raise DataError(f"{KEYPOINT_X} has {len(x)} values but {KEYPOINT_Y} {len(y)}", where=where)
    if num_keypoints is not None and num_keypoints > 0:
        k = int(num_keypoints)
        if len(x) != n * k:
            raise DataError(f"{KEYPOINT_X} has {len(x)} values for {n} boxes x {k} keypoints (num_keypoints)",
                            where=where, hint="set the input reader's num_keypoints to the records' count")
    elif len(x):
        if n == 0 or len(x) % n:
            raise DataError(f"{KEYPOINT_X} has {len(x)} values, not a multiple of the {n} boxes", where=where)
        k = len(x) // n
    else:
        k = 0
    vis_raw = np.asarray(_ints(feats[KEYPOINT_VISIBILITY]) if KEYPOINT_VISIBILITY in feats else [], np.int64)
    if len(vis_raw) == len(x):  # TF: the record's visibility when it has one per keypoint, else 2 / 0 by NaN
        vis = vis_raw
    else:
        vis = np.where(np.isnan(x), 0, 2).astype(np.int64)
    texts = [t.decode("utf-8", errors="replace") for t in _bytes(feats[KEYPOINT_TEXT])] \
        if KEYPOINT_TEXT in feats else []
    return (np.stack([y, x], axis=-1).reshape(n, k, 2), vis.reshape(n, k),
            texts if len(texts) == n * k else [])


# ----------------------------------------------------------------------------------------------------------
# Encoding


def bytes_feature(values: Sequence[bytes | str]) -> example_pb2.Feature:
    f = example_pb2.Feature()
    f.bytes_list.value.extend(v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values)
    return f


def float_feature(values: Sequence[float] | np.ndarray) -> example_pb2.Feature:
    f = example_pb2.Feature()
    f.float_list.value.extend(float(v) for v in np.asarray(values, np.float32).reshape(-1))
    return f


def int64_feature(values: Sequence[int] | np.ndarray) -> example_pb2.Feature:
    f = example_pb2.Feature()
    f.int64_list.value.extend(int(v) for v in np.asarray(values, np.int64).reshape(-1))
    return f


def build_example(features: Mapping[str, example_pb2.Feature]) -> example_pb2.Example:
    ex = example_pb2.Example()
    for k, v in features.items():
        ex.features.feature[k].CopyFrom(v)
    return ex


def serialize(ex: example_pb2.Example) -> bytes:
    """Deterministic serialization (map keys sorted), so identical examples give identical bytes."""
    return ex.SerializeToString(deterministic=True)


def detection_features(
    image: bytes,
    *,
    format: str,
    height: int,
    width: int,
    filename: str = "",
    source_id: str | None = None,
    boxes: np.ndarray | Sequence[Sequence[float]] = (),
    labels: Sequence[int] | np.ndarray = (),
    texts: Sequence[str] | None = None,
    difficult: Sequence[int] | np.ndarray | None = None,
    truncated: Sequence[int] | np.ndarray | None = None,
    group_of: Sequence[int] | np.ndarray | None = None,
    weights: Sequence[float] | np.ndarray | None = None,
    view: Sequence[str] | None = None,
    is_crowd: Sequence[int] | np.ndarray | None = None,
    area: Sequence[float] | np.ndarray | None = None,
    sha256: str | None = None,
    keypoints: np.ndarray | None = None,
    keypoint_visibility: np.ndarray | Sequence[Sequence[int]] | None = None,
    keypoint_texts: Sequence[str] | None = None,
    masks: np.ndarray | None = None,
    mask_format: str = "png",
) -> dict[str, example_pb2.Feature]:
    """The TF OD API feature dict; boxes are [N, 4] ymin, xmin, ymax, xmax normalized.

    ``masks`` [N, height, width] (nonzero = object) as ``mask_format`` "png" or "numerical".

    ``keypoints`` [N, K, 2] (y, x) normalized, ``keypoint_visibility`` [N, K] (COCO 0/1/2; default 2),
    ``keypoint_texts`` K names (repeated per object, as TF's create_coco_tf_record.py) or N*K names.
    """
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = b.shape[0]
    lab = np.asarray(labels, np.int64).reshape(-1)
    if len(lab) != n:
        raise ValueError(f"{len(lab)} labels for {n} boxes")
    feats: dict[str, example_pb2.Feature] = {
        "image/height": int64_feature([height]),
        "image/width": int64_feature([width]),
        "image/filename": bytes_feature([filename]),
        "image/source_id": bytes_feature([filename if source_id is None else source_id]),
        "image/key/sha256": bytes_feature([sha256 or hashlib.sha256(image).hexdigest()]),
        "image/encoded": bytes_feature([image]),
        "image/format": bytes_feature([format]),
        "image/object/bbox/xmin": float_feature(b[:, 1]),
        "image/object/bbox/xmax": float_feature(b[:, 3]),
        "image/object/bbox/ymin": float_feature(b[:, 0]),
        "image/object/bbox/ymax": float_feature(b[:, 2]),
        "image/object/class/label": int64_feature(lab),
    }
    if texts is not None:
        if len(texts) != n:
            raise ValueError(f"{len(texts)} class texts for {n} boxes")
        feats["image/object/class/text"] = bytes_feature(list(texts))
    for key, vals in (("difficult", difficult), ("truncated", truncated), ("group_of", group_of),
                      ("is_crowd", is_crowd)):
        if vals is not None:
            feats[f"image/object/{key}"] = int64_feature(vals)
    if weights is not None:
        feats["image/object/weight"] = float_feature(weights)
    if area is not None:
        if len(area) != n:
            raise ValueError(f"{len(area)} areas for {n} boxes")
        feats["image/object/area"] = float_feature(area)
    if view is not None:
        feats["image/object/view"] = bytes_feature(list(view))
    if keypoints is not None:
        feats.update(keypoint_features(np.asarray(keypoints, np.float32), keypoint_visibility, keypoint_texts, n))
    if masks is not None:
        m = np.asarray(masks)
        if m.ndim != 3 or m.shape[0] != n or m.shape[1:] != (height, width):
            raise ValueError(f"masks must be [{n}, {height}, {width}], got {list(m.shape)}")
        feats.update(mask_features(m, mask_format))
    return feats


def keypoint_features(keypoints: np.ndarray, visibility: Any, texts: Sequence[str] | None, n: int
                      ) -> dict[str, example_pb2.Feature]:
    """``image/object/keypoint/{x,y,visibility,num,text}`` for [N, K, 2] (y, x) keypoints."""
    if keypoints.ndim != 3 or keypoints.shape[0] != n or keypoints.shape[2] != 2:
        raise ValueError(f"keypoints must be [{n}, K, 2], got {list(keypoints.shape)}")
    k = keypoints.shape[1]
    vis = np.full((n, k), 2, np.int64) if visibility is None else np.asarray(visibility, np.int64).reshape(n, k)
    out = {
        KEYPOINT_X: float_feature(keypoints[:, :, 1]),
        KEYPOINT_Y: float_feature(keypoints[:, :, 0]),
        KEYPOINT_VISIBILITY: int64_feature(vis),
        "image/object/keypoint/num": int64_feature((vis > 0).sum(axis=1)),
    }
    if texts:
        names = list(texts) if len(texts) == n * k else list(texts) * n
        if len(names) != n * k:
            raise ValueError(f"{len(texts)} keypoint texts for {n} objects x {k} keypoints")
        out[KEYPOINT_TEXT] = bytes_feature(names)
    return out


def encode_detection_example(image: bytes, **kwargs: Any) -> bytes:
    """Serialized tf.Example with the TF OD API keys (see ``detection_features`` for arguments)."""
    return serialize(build_example(detection_features(image, **kwargs)))


def encode_from(ex: DetectionExample) -> bytes:
    """Serialize a DetectionExample (round trip of ``decode_detection_example``)."""
    return encode_detection_example(
        ex.image, format=ex.format, height=ex.height, width=ex.width, filename=ex.filename,
        source_id=ex.source_id, boxes=ex.boxes, labels=ex.labels, texts=ex.texts or None,
        difficult=ex.difficult, truncated=ex.truncated, group_of=ex.group_of, weights=ex.weights,
        view=ex.view or None, is_crowd=ex.is_crowd, sha256=ex.sha256 or None,
        area=ex.area if len(ex.area) == ex.num_boxes and ex.num_boxes else None,
        keypoints=ex.keypoints if ex.num_keypoints else None, keypoint_visibility=ex.keypoint_visibility,
        keypoint_texts=ex.keypoint_texts or None, masks=ex.masks,
    )
