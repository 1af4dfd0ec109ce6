"""PASCAL VOC folders -> sharded TFRecords.

Layouts found automatically under ``data_dir`` (or given with ``annotations_dir`` / ``images_dir``):
``Annotations/`` + ``JPEGImages/`` (VOC), ``annotations/`` + ``images/`` (LabelImg, raccoon),
``annotations/xmls/`` + ``images/`` (pets), or XMLs next to their images. The image is
``images_dir/<filename>`` from the XML (``<xml stem>.jpg`` when absent), else next to the XML.
"""

from __future__ import annotations

import functools
import os

import numpy as np

from odkit.data.converters.common import Log, SourceImage, Summary, dataset_file, stderr_log, write_dataset
from odkit.data.converters.voc_xml import parse_voc_xml
from odkit.data.label_map import load_label_map
from odkit.errors import DataError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


def _has_xml(d: str) -> bool:
    return os.path.isdir(d) and any(n.lower().endswith(".xml") for n in os.listdir(d))


def find_voc_dirs(data_dir: str, annotations_dir: str | None = None, images_dir: str | None = None) -> tuple[str, str]:
    if not os.path.isdir(data_dir):
        raise DataError("data folder not found", where=data_dir)
    if annotations_dir is None:
        for cand in ("Annotations", os.path.join("annotations", "xmls"), "annotations", "xmls", "."):
            d = os.path.normpath(os.path.join(data_dir, cand))
            if _has_xml(d):
                annotations_dir = d
                break
        else:
            raise DataError("no VOC XML annotations found (looked in Annotations/, annotations/, "
                            "annotations/xmls/ and the folder itself)", where=data_dir,
                            hint="pass --annotations_dir")
    if images_dir is None:
        for cand in ("JPEGImages", "images", "Images"):
            d = os.path.join(data_dir, cand)
            if os.path.isdir(d):
                images_dir = d
                break
        else:
            images_dir = annotations_dir
    return annotations_dir, images_dir


def voc_instance_mask(png_path: str, index: int, height: int, width: int) -> np.ndarray:
    """Object ``index`` (1-based, the XML's object order) of a VOC ``SegmentationObject`` PNG (palette
    indices; 0 background, 255 void / boundary) -> uint8 [H, W] 0/1."""
    from PIL import Image

    from odkit.data.image_io import check_image_pixels

    try:
        with Image.open(png_path) as img:
            check_image_pixels(img.width, img.height, png_path)
            if img.mode not in ("P", "L"):
                raise DataError(f"SegmentationObject PNG has mode {img.mode}, expected palette indices (P or L)",
                                where=png_path)
            arr = np.asarray(img)
    except OSError as exc:
        raise DataError(f"cannot read the segmentation PNG ({exc})", where=png_path) from None
    if arr.shape != (height, width):
        raise DataError(f"segmentation PNG is {arr.shape[1]}x{arr.shape[0]}, the image {width}x{height}",
                        where=png_path)
    return (arr == index).astype(np.uint8)


def collect_voc(data_dir: str, annotations_dir: str | None = None, images_dir: str | None = None,
                ignore_difficult: bool = False, mask_dir: str | None = None) -> list[SourceImage]:
    """Parse all XMLs (sorted by name) into SourceImages. ``mask_dir`` (a VOC ``SegmentationObject`` folder):
    object k of ``<stem>.xml`` gets the pixels of value k (1-based) of ``<stem>.png`` as its mask; images
    without a PNG get no masks (zeros, counted)."""
    ann_dir, img_dir = find_voc_dirs(data_dir, annotations_dir, images_dir)
    if mask_dir is not None and not os.path.isdir(mask_dir):
        raise DataError("segmentation mask folder not found", where=mask_dir,
                        hint="give the VOC SegmentationObject folder with --mask_dir")
    xmls = sorted(n for n in os.listdir(ann_dir) if n.lower().endswith(".xml"))
    out = []
    for name in xmls:
        xml_path = dataset_file(ann_dir, name, where=ann_dir, what="annotation file")
        ann = parse_voc_xml(xml_path)
        filename = ann.filename or os.path.splitext(name)[0] + ".jpg"
        path = dataset_file(img_dir, filename, where=xml_path)
        if not os.path.isfile(path):
            alt = dataset_file(ann_dir, filename, where=xml_path)
            if os.path.isfile(alt):
                path = alt
            else:
                stem = os.path.splitext(name)[0]
                for ext in IMAGE_EXTS:
                    cand = dataset_file(img_dir, stem + ext, where=xml_path)
                    if os.path.isfile(cand):
                        path, filename = cand, stem + ext
                        break
        if mask_dir is not None:
            png = dataset_file(mask_dir, os.path.splitext(name)[0] + ".png", where=xml_path, what="mask file")
            if os.path.isfile(png):
                for k, o in enumerate(ann.objects, 1):
                    o.mask = functools.partial(voc_instance_mask, png, k)
        objects = [o for o in ann.objects if not (ignore_difficult and o.difficult)]
        out.append(SourceImage(path=path, filename=filename, where=xml_path, width=ann.width, height=ann.height,
                               objects=objects, with_masks=mask_dir is not None))
    return out


def create_voc_tfrecord(
    data_dir: str, output_path: str, *, label_map_path: str | None = None, num_shards: int = 1,
    val_fraction: float = 0.0, seed: int = 42, annotations_dir: str | None = None, images_dir: str | None = None,
    label_map_output_path: str | None = None, ignore_difficult: bool = False, mask_dir: str | None = None,
    log: Log | None = stderr_log,
) -> Summary:
    images = collect_voc(data_dir, annotations_dir, images_dir, ignore_difficult, mask_dir)
    if not images:
        raise DataError("no annotations found", where=data_dir)
    label_map = load_label_map(label_map_path) if label_map_path else None
    return write_dataset(images, output_path=output_path, label_map=label_map, num_shards=num_shards,
                         val_fraction=val_fraction, seed=seed, label_map_output_path=label_map_output_path, log=log)
