"""Oxford-IIIT Pet -> sharded TFRecords, as TF OD API's dataset_tools/create_pet_tf_record.py.

Reproduced: examples from ``annotations/trainval.txt`` (first token of each line), shuffled with
``random.seed(42)``, first ``int(0.7 * n)`` to ``pet_faces_train.record``, the rest to ``pet_faces_val.record``,
``NAME-0000i-of-0000N`` shards with example ``idx`` (its position in the shuffled list, skipped ones
counted) in shard ``idx % N``; the class is the breed from the XML ``<filename>``
(``([A-Za-z_]+)(_[0-9]+\\.jpg)``), boxes normalized by the XML size, difficult / truncated / pose (view)
from the XML, examples without XML skipped with a warning.

Differences (deliberate, counted in the summary): examples whose class is not in the label map are
skipped (TF raises KeyError); unreadable images are skipped; a non-JPEG image is kept with its true
format (PNG) or re-encoded to JPEG (GIF, CMYK, ...) where TF skips it ("Image format not JPEG"); boxes are
clipped to the image and zero-area ones dropped; ``faces_only=False`` (trimap masks) is refused.
"""

from __future__ import annotations

import os
import random
import re

import numpy as np

from odkit.data.converters.common import (
    Log,
    SplitSummary,
    Summary,
    check_written,
    clean_boxes,
    dataset_file,
    prepare_image,
    stderr_log,
)
from odkit.data.converters.voc_xml import parse_voc_xml
from odkit.data.example import encode_detection_example
from odkit.data.label_map import LabelMap, get_pets_label_map, load_label_map
from odkit.data.tfrecord import ShardedWriter
from odkit.errors import DataError, UnsupportedError, processing
from odkit.fileio import check_output_dir

_CLASS_RE = re.compile(r"([A-Za-z_]+)(_[0-9]+\.jpg)", re.I)


def class_name_from_filename(file_name: str) -> str | None:
    """``american_pit_bull_terrier_105.jpg`` -> ``american_pit_bull_terrier`` (None if it does not match)."""
    m = _CLASS_RE.match(file_name)
    return m.group(1) if m else None


def read_examples_list(path: str) -> list[str]:
    """First space-separated token of every line (dataset_util.read_examples_list)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except FileNotFoundError as exc:
        raise DataError("examples list not found", where=path,
                        hint="--data_dir must hold images/ and annotations/ (trainval.txt, xmls/)") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"examples list is not UTF-8 text (byte {exc.start})", where=path) from None
    except OSError as exc:
        raise DataError(f"cannot read the examples list ({exc.strerror or exc})", where=path) from None
    return [line.strip().split(" ")[0] for line in lines]


def split_pets(examples: list[str]) -> tuple[list[str], list[str]]:
    """random.seed(42); shuffle; 70 / 30 (create_pet_tf_record.main)."""
    examples = list(examples)
    random.Random(42).shuffle(examples)
    num_train = int(0.7 * len(examples))
    return examples[:num_train], examples[num_train:]


def _write_pets_split(
    name: str, w: ShardedWriter, examples: list[str], data_dir: str, image_dir: str,
    label_map: LabelMap, summary: Summary, log: Log | None,
) -> None:
    split = SplitSummary(name=name, pattern=w.pattern)
    for idx, example in enumerate(examples):
        if log is not None and idx and idx % 500 == 0:
            log(f"{name}: on image {idx} of {len(examples)}")
        if example.startswith("#") or not example:
            summary.skip("comment_line", f"{name} list entry {example!r}", None)
            continue
        where = f"{os.path.join(data_dir, 'annotations', 'trainval.txt')} entry {example[:80]!r}"
        xml_path = dataset_file(data_dir, os.path.join("annotations", "xmls", example + ".xml"), where=where,
                                what="annotation file")
        if not os.path.exists(xml_path):
            summary.skip("no_xml", f"could not find {xml_path}, ignoring example", log)
            continue
        with processing(xml_path):
            ann = parse_voc_xml(xml_path)
        filename = ann.filename or example + ".jpg"
        img_path = dataset_file(image_dir, filename, where=xml_path)
        class_name = class_name_from_filename(filename)
        if class_name is None:
            summary.skip("bad_filename", f"{xml_path}: no breed in file name {filename!r}", log)
            continue
        if class_name not in label_map.name_to_id:
            summary.skip("class_not_in_label_map", f"{xml_path}: class {class_name!r}", log)
            continue
        if not os.path.isfile(img_path):
            summary.skip("missing_image", f"{xml_path}: image {img_path} not found", log)
            continue
        try:
            prep = prepare_image(img_path, summary)
        except DataError as exc:
            summary.skip("corrupt_image", exc.one_line(), log)
            continue
        width = ann.width or prep.width
        height = ann.height or prep.height
        if (width, height) != (prep.width, prep.height):
            summary.notes["size_mismatch"] += 1
            summary.warn(f"{xml_path}: XML size {width}x{height} differs from the image "
                         f"{prep.width}x{prep.height}; using the image size")
            width, height = prep.width, prep.height
        cleaned = clean_boxes(ann.objects, width, height, summary, xml_path)
        objs = [o for o, _ in cleaned]
        boxes = np.stack([b for _, b in cleaned]) if cleaned else np.zeros((0, 4), np.float32)
        if not objs:
            summary.notes["images_without_boxes"] += 1
        label = label_map.name_to_id[class_name]
        data = encode_detection_example(
            prep.data, format=prep.format, height=height, width=width, filename=filename,
            source_id=filename, sha256=prep.sha256, boxes=boxes, labels=[label] * len(objs),
            texts=[class_name] * len(objs), difficult=[o.difficult for o in objs],
            truncated=[o.truncated for o in objs], view=[o.pose for o in objs],
        )
        w.write(data, index=idx)
        split.examples += 1
        split.boxes += len(objs)
        summary.class_boxes[class_name] += len(objs)
    split.shard_counts = list(w.counts)
    summary.splits[name] = split


def create_pet_tfrecord(
    data_dir: str,
    output_dir: str,
    label_map_path: str | None = None,
    num_shards: int = 10,
    faces_only: bool = True,
    log: Log | None = stderr_log,
) -> Summary:
    """Convert an Oxford-IIIT Pet folder (``images/``, ``annotations/trainval.txt``, ``annotations/xmls/``)."""
    if not faces_only:
        raise UnsupportedError("--faces_only false (full-body boxes from trimap masks) is not supported",
                               hint="use --faces_only true")
    if num_shards < 1:
        raise DataError(f"--num_shards must be >= 1, got {num_shards}")
    if not os.path.isdir(data_dir):
        raise DataError("data folder not found", where=data_dir)
    check_output_dir(output_dir, "--output_dir")
    label_map = load_label_map(label_map_path) if label_map_path else get_pets_label_map()
    image_dir = os.path.join(data_dir, "images")
    annotations_dir = os.path.join(data_dir, "annotations")
    examples = read_examples_list(os.path.join(annotations_dir, "trainval.txt"))
    train, val = split_pets(examples)  # (the counts are in the summary printed at the end)
    summary = Summary(label_map_path=label_map.path, num_classes=label_map.num_classes)
    writers: list[ShardedWriter] = []
    try:  # all or nothing: both splits are published together, only when they hold boxes
        for name, part in (("train", train), ("val", val)):
            w = ShardedWriter(os.path.join(output_dir, f"pet_faces_{name}.record"), num_shards)
            writers.append(w)
            _write_pets_split(name, w, part, data_dir, image_dir, label_map, summary, log)
            w.finish()
        check_written(summary, label_map, log)
        for w in writers:
            w.publish()
    except BaseException:
        for w in writers:
            w.abort()
        raise
    return summary
