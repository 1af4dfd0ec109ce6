"""Converters writing instance masks: COCO polygons / uncompressed RLE / compressed RLE (as pycocotools'
annToMask) on real images via the CLI, VOC SegmentationObject palette PNGs (object k = value k)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from odkit.cli import main
from odkit.data.converters.voc import create_voc_tfrecord
from odkit.data.example import decode_detection_example
from odkit.data.tfrecord import iter_records

mask_util = pytest.importorskip("pycocotools.mask")


def _records(pattern: str, mask_type: str = "PNG_MASKS") -> list:
    return [decode_detection_example(r, load_instance_masks=True, mask_type=mask_type) for r in iter_records(pattern)]


def test_coco_polygons_and_rle_to_png_masks(shared_dir, tmp_path, capsys):
    paths = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    images, anns = [], []
    expected: dict[int, list[np.ndarray]] = {}
    rng = np.random.default_rng(0)
    for i, p in enumerate(paths, 1):
        w, h = Image.open(p).size
        images.append({"id": i, "file_name": p.name, "width": w, "height": h})
        poly = [[w * 0.1, h * 0.1, w * 0.6, h * 0.15, w * 0.4, h * 0.7], [w * 0.7, h * 0.7, w * 0.9, h * 0.7,
                                                                             w * 0.9, h * 0.9]]
        raw = (rng.random((h, w)) > 0.7).astype(np.uint8)
        raw[: h // 2] = 0
        compressed = mask_util.encode(np.asfortranarray(raw))
        uncompressed_src = np.zeros((h, w), np.uint8)
        uncompressed_src[h // 3: h // 2, w // 4: w // 2] = 1
        flat = uncompressed_src.flatten(order="F")
        counts, prev, run = [], 0, 0
        for v in flat:  # uncompressed RLE: alternating run lengths starting with zeros
            if v != prev:
                counts.append(run)
                run, prev = 0, v
            run += 1
        counts.append(run)
        segms = [poly, {"size": [h, w], "counts": counts},
                 {"size": [h, w], "counts": compressed["counts"].decode()}]
        expected[i] = []
        for k, segm in enumerate(segms):
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": 1, "iscrowd": int(k == 1),
                         "bbox": [1, 1, w / 2, h / 2], "segmentation": segm})
            rle = segm if isinstance(segm.get("counts") if isinstance(segm, dict) else None, str) else \
                mask_util.frPyObjects(segm, h, w)  # pycocotools annToRLE
            if isinstance(rle, list):
                rle = mask_util.merge(rle)
            m = mask_util.decode(rle)
            expected[i].append((m.max(axis=2) if m.ndim == 3 else m).astype(np.uint8))
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns,
                                    "categories": [{"id": 1, "name": "raccoon"}]}))
    out = tmp_path / "out" / "r.record"
    rc = main(["create-tfrecord", "--format", "coco", "--annotations_file", str(ann_file), "--image_dir",
               str(paths[0].parent), "--output_path", str(out), "--include_masks", "--json"])
    assert rc == 0
    exs = _records(str(out) + "*")
    assert len(exs) == 2
    for ex in exs:
        want = expected[int(ex.source_id)]
        assert ex.masks.shape == (3, ex.height, ex.width)
        for got, ref in zip(ex.masks, want):
            np.testing.assert_array_equal(got, ref)
        assert 0 < int(ex.masks[1].sum()) == int(want[1].sum())
    # without --include_masks no mask feature is written
    out2 = tmp_path / "out2" / "r.record"
    assert main(["create-tfrecord", "--format", "coco", "--annotations_file", str(ann_file), "--image_dir",
                 str(paths[0].parent), "--output_path", str(out2)]) == 0
    assert all(decode_detection_example(r).masks is None for r in iter_records(str(out2) + "*"))
    capsys.readouterr()


def test_coco_bad_segmentation_is_skipped_with_a_reason(shared_dir, tmp_path):
    from odkit.data.converters.coco import create_coco_tfrecord

    p = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[0]
    w, h = Image.open(p).size
    good = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 9, 1, 9, 9]]}
    bad = {"id": 2, "image_id": 2, "category_id": 1, "bbox": [1, 1, 5, 5],
           "segmentation": {"size": [h + 1, w], "counts": [5, 5]}}
    images = [{"id": 1, "file_name": p.name, "width": w, "height": h},
              {"id": 2, "file_name": p.name, "width": w, "height": h}]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": [good, bad],
                                                 "categories": [{"id": 1, "name": "raccoon"}]}))
    s = create_coco_tfrecord(str(tmp_path / "c.json"), str(p.parent), str(tmp_path / "o" / "o.record"),
                             include_masks=True, log=None)
    assert s.skipped["bad_mask"] == 1 and s.written == 1


def test_voc_segmentation_object_pngs(tmp_path):
    root = tmp_path / "VOC"
    for d in ("Annotations", "JPEGImages", "SegmentationObject"):
        (root / d).mkdir(parents=True)
    w, h = 40, 30
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in (("cat", 2, 3, 20, 25), ("dog", 15, 5, 38, 28)))
    for stem in ("a", "b"):
        (root / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><filename>{stem}.jpg</filename><size><width>{w}</width><height>{h}</height>"
            f"<depth>3</depth></size>{objs}</annotation>")
        Image.new("RGB", (w, h), (90, 90, 90)).save(root / "JPEGImages" / f"{stem}.jpg")
    seg = np.zeros((h, w), np.uint8)
    seg[3:25, 2:20] = 1
    seg[5:28, 15:38] = 2  # the dog overlaps the cat
    seg[10, :] = 255  # void boundary
    img = Image.fromarray(seg, mode="P")
    img.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * 759)
    img.save(root / "SegmentationObject" / "a.png")  # b has no PNG: zero masks, counted
    s = create_voc_tfrecord(str(root), str(tmp_path / "o" / "v.record"), mask_dir=str(root / "SegmentationObject"),
                            log=None)
    assert s.notes["objects_without_mask"] == 2
    exs = {ex.filename: ex for ex in _records(str(tmp_path / "o" / "v.record") + "*")}
    np.testing.assert_array_equal(exs["a.jpg"].masks[0], (seg == 1).astype(np.uint8))
    np.testing.assert_array_equal(exs["a.jpg"].masks[1], (seg == 2).astype(np.uint8))
    assert exs["b.jpg"].masks.shape == (2, h, w) and exs["b.jpg"].masks.sum() == 0


def test_records_inspect_reports_and_draws_masks(tmp_path):
    import io

    from odkit.data.example import encode_detection_example
    from odkit.data.inspect_records import draw_example, example_json, iter_examples
    from odkit.data.tfrecord import TFRecordWriter

    buf = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 0, 0)).save(buf, format="PNG")
    masks = np.zeros((1, 10, 20), np.uint8)
    masks[0, 2:5, 3:9] = 1
    path = tmp_path / "m.record"
    with TFRecordWriter(str(path)) as w:
        w.write(encode_detection_example(buf.getvalue(), format="png", height=10, width=20,
                                         boxes=[[0.2, 0.15, 0.5, 0.45]], labels=[1], masks=masks))
        w.write(encode_detection_example(buf.getvalue(), format="png", height=10, width=20,
                                         boxes=[[0.2, 0.15, 0.5, 0.45]], labels=[1]))
    items = list(iter_examples(str(path)))
    assert example_json(items[0])["mask_pixels"] == [18]
    assert "mask_pixels" not in example_json(items[1])
    drawn = np.asarray(draw_example(items[0].example))
    assert drawn[3, 5].any() and not drawn[8, 18].any()  # the mask is blended in, the background untouched
