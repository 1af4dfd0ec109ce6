"""Dataset converters: pets (TF create_pet_tf_record.py semantics), VOC, COCO, CSV, messy inputs."""

from __future__ import annotations

import io
import json
import os
import random

import numpy as np
import pytest
from PIL import Image

from odkit.cli import main
from odkit.data.converters.coco import create_coco_tfrecord
from odkit.data.converters.csv_table import create_csv_tfrecord
from odkit.data.converters.pets import class_name_from_filename, create_pet_tfrecord
from odkit.data.converters.voc import create_voc_tfrecord
from odkit.data.example import decode_detection_example
from odkit.data.label_map import load_label_map, pets_label_map_path, write_label_map
from odkit.data.tfrecord import iter_records
from odkit.errors import DataError


def _examples(pattern: str) -> list:
    return [decode_detection_example(r) for r in iter_records(pattern)]


def _save(path, mode: str = "RGB", fmt: str = "JPEG", size=(40, 30)) -> None:
    color = {"RGB": (10, 200, 30), "RGBA": (10, 200, 30, 128), "L": 90, "CMYK": (0, 50, 200, 0), "P": 3}[mode]
    Image.new(mode, size, color).save(path, format=fmt)


def _xml(filename: str, objects: list[tuple[str, int, int, int, int]], w: int = 40, h: int = 30,
         difficult: int = 0) -> str:
    objs = "".join(
        f"<object><name>{n}</name><pose>Frontal</pose><truncated>1</truncated><difficult>{difficult}</difficult>"
        f"<bndbox><xmin>{a}</xmin><ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects)
    return (f"<annotation><folder>images</folder><filename>{filename}</filename>"
            f"<size><width>{w}</width><height>{h}</height><depth>3</depth></size>{objs}</annotation>")


def test_class_name_from_filename() -> None:
    assert class_name_from_filename("american_pit_bull_terrier_105.jpg") == "american_pit_bull_terrier"
    assert class_name_from_filename("Abyssinian_1.jpg") == "Abyssinian"
    assert class_name_from_filename("noindex.jpg") is None


def test_pets_subset_like_tf(shared_dir, tmp_path) -> None:
    data = shared_dir / "datasets" / "oxford_pets_subset"
    out = tmp_path / "rec"
    s = create_pet_tfrecord(str(data), str(out), num_shards=10, log=None)
    # trainval.txt: 300 lines, shuffled with seed 42 -> 210 / 90; 4 trainval images have no XML
    assert (s.splits["train"].examples, s.splits["val"].examples) == (206, 90)
    assert dict(s.skipped) == {"no_xml": 4}
    assert s.splits["train"].boxes + s.splits["val"].boxes == 297
    assert sorted(os.listdir(out))[:2] == ["pet_faces_train.record-00000-of-00010",
                                           "pet_faces_train.record-00001-of-00010"]
    assert len(os.listdir(out)) == 20

    # the split is TF's: random.seed(42); random.shuffle(list); int(0.7 * n)
    names = [ln.strip().split(" ")[0] for ln in open(data / "annotations" / "trainval.txt")]
    random.seed(42)
    random.shuffle(names)
    train_names = {n + ".jpg" for n in names[:210]} - {"Abyssinian_104.jpg", "Bengal_111.jpg", "Bengal_175.jpg",
                                                        "american_bulldog_202.jpg"}
    train = _examples(str(out / "pet_faces_train.record-?????-of-00010"))
    assert {e.filename for e in train} == train_names
    # shard of example idx is idx % 10, idx counting skipped examples
    shard3 = _examples(str(out / "pet_faces_train.record-00003-of-00010"))
    expected3 = [n + ".jpg" for i, n in enumerate(names[:210]) if i % 10 == 3 and n + ".jpg" in train_names]
    assert [e.filename for e in shard3] == expected3

    # same feature values as the TF-written records for the images in both
    exp = json.loads((shared_dir / "compat" / "tfrecords_tf" / "pet_faces_tf.expected.json").read_text())
    ours = {e.filename: e for e in train + _examples(str(out / "pet_faces_val.record-?????-of-00010"))}
    compared = 0
    for r in exp["records"]:
        e = ours.get(r["filename"])
        if e is None or not r["boxes_yxyx"]:
            continue
        assert (e.height, e.width, e.format) == (r["height"], r["width"], r["format"])
        assert e.labels.tolist() == r["labels"] and e.texts == r["texts"]
        np.testing.assert_allclose(e.boxes, r["boxes_yxyx"], atol=1e-6)
        assert e.sha256 == r["sha256"] and e.view == ["Frontal"] * len(e.texts)
        compared += 1
    assert compared >= 8


def test_pets_label_map_restricts_classes(shared_dir, tmp_path) -> None:
    lm = tmp_path / "lm.pbtxt"
    write_label_map(["Bengal"], lm)
    s = create_pet_tfrecord(str(shared_dir / "datasets" / "oxford_pets_subset"), str(tmp_path / "o"),
                            label_map_path=str(lm), num_shards=1, log=None)
    # 296 trainval images have an XML; 98 of them are Bengal (Bengal_111 and Bengal_175 have no XML)
    assert s.skipped["class_not_in_label_map"] == 198 and s.skipped["no_xml"] == 4
    assert s.written == 98
    assert {t for e in _examples(str(tmp_path / "o" / "*")) for t in e.texts} == {"Bengal"}


def test_pets_on_synthetic_layout(tmp_path) -> None:
    from odkit.data.synthetic import SyntheticSpec, generate_pets_like

    d = tmp_path / "syn"
    generate_pets_like(d, SyntheticSpec(images_per_class=4, test_per_class=1, min_size=64, max_size=80))
    rc = main(["create-pet-tfrecord", "--data_dir", str(d), "--output_dir", str(tmp_path / "r"),
               "--label_map_path", str(d / "label_map.pbtxt"), "--num_shards", "2"])
    assert rc == 0
    exs = _examples(str(tmp_path / "r" / "pet_faces_*.record-?????-of-00002"))
    lm = load_label_map(d / "label_map.pbtxt")
    assert len(exs) > 0 and all(e.num_boxes >= 1 for e in exs)
    assert all(lm.name_to_id[t] == lab for e in exs for t, lab in zip(e.texts, e.labels.tolist()))


def test_raccoon_voc(shared_dir, tmp_path) -> None:
    out = tmp_path / "r" / "raccoon.record"
    rc = main(["create-tfrecord", "--format", "voc", "--data_dir", str(shared_dir / "datasets" / "raccoon"),
               "--output_path", str(out), "--num_shards", "2", "--val_fraction", "0.2"])
    assert rc == 0
    train = _examples(str(tmp_path / "r" / "raccoon_train.record-?????-of-00002"))
    val = _examples(str(tmp_path / "r" / "raccoon_val.record-?????-of-00002"))
    assert (len(train), len(val)) == (160, 40)
    assert sum(e.num_boxes for e in train + val) == 217
    assert not {e.filename for e in train} & {e.filename for e in val}
    assert load_label_map(tmp_path / "r" / "label_map.pbtxt").name_to_id == {"raccoon": 1}
    r1 = next(e for e in train + val if e.filename == "raccoon-1.jpg")
    np.testing.assert_allclose(r1.boxes, [[88 / 417, 81 / 650, 408 / 417, 522 / 650]], atol=1e-6)


def test_pets_coco_37_breeds(shared_dir, tmp_path) -> None:
    d = shared_dir / "datasets" / "oxford_pets_subset" / "extra_37breeds_coco" / "data"
    ann = d / "sample_annotations" / "coco" / "annotations" / "instances_sample.json"
    rc = main(["create-tfrecord", "--format", "coco", "--annotations_file", str(ann), "--image_dir",
               str(d / "sample_images"), "--output_path", str(tmp_path / "c.record"), "--class_key", "breed",
               "--label_map_path", pets_label_map_path()])
    assert rc == 0
    exs = _examples(str(tmp_path / "c.record-00000-of-00001"))
    assert len(exs) == 370 and sum(e.num_boxes for e in exs) == 370
    assert len({int(v) for e in exs for v in e.labels}) == 37
    a101 = next(e for e in exs if e.filename == "cats/Abyssinian_101.jpg")
    assert a101.labels.tolist() == [1] and a101.texts == ["Abyssinian"] and a101.source_id == "1"
    np.testing.assert_allclose(a101.boxes, [[36 / 313, 54 / 450, 235 / 313, 319 / 450]], atol=1e-6)
    # without --class_key: the single category "pet" (COCO id 0) becomes id 1 in a written label map
    s = create_coco_tfrecord(str(ann), str(d / "sample_images"), str(tmp_path / "p" / "p.record"), log=None)
    assert s.written == 370 and load_label_map(s.label_map_path).name_to_id == {"pet": 1}


def test_messy_voc_folder(tmp_path) -> None:
    root = tmp_path / "ds"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    img = root / "JPEGImages"
    _save(img / "a.jpg")
    _save(img / "png.jpg", "RGBA", "PNG")
    _save(img / "gif.jpg", "P", "GIF")
    _save(img / "cmyk.jpg", "CMYK", "JPEG")
    _save(img / "gray.jpg", "L", "JPEG")
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(buf, format="JPEG")
    (img / "trunc.jpg").write_bytes(buf.getvalue()[:300])
    anns = {
        "a": _xml("a.jpg", [("cat", -5, 2, 20, 50), ("cat", 10, 10, 10, 20), ("zebra", 1, 1, 5, 5)]),
        "png": _xml("png.jpg", [("dog", 0, 0, 40, 30)]),
        "gif": _xml("gif.jpg", [("dog", 1, 1, 20, 20)]),
        "cmyk": _xml("cmyk.jpg", [("cat", 1, 1, 20, 20)]),
        "gray": _xml("gray.jpg", [("cat", 1, 1, 20, 20)], difficult=1),
        "trunc": _xml("trunc.jpg", [("cat", 1, 1, 20, 20)]),
        "missing": _xml("missing.jpg", [("cat", 1, 1, 20, 20)]),
    }
    for k, v in anns.items():
        (root / "Annotations" / f"{k}.xml").write_text(v)
    lm = tmp_path / "lm.pbtxt"
    write_label_map(["cat", "dog"], lm)
    s = create_voc_tfrecord(str(root), str(tmp_path / "o" / "m.record"), label_map_path=str(lm), log=None)
    assert dict(s.skipped) == {"corrupt_image": 1, "missing_image": 1}
    assert s.notes["boxes_clipped"] == 1 and s.notes["boxes_dropped_zero_area"] == 1
    assert s.notes["boxes_unknown_class"] == 1 and s.notes["reencoded"] == 2 and s.notes["format_mismatch"] == 2
    exs = {e.filename: e for e in _examples(str(tmp_path / "o" / "m.record-00000-of-00001"))}
    assert sorted(exs) == ["a.jpg", "cmyk.jpg", "gif.jpg", "gray.jpg", "png.jpg"]
    np.testing.assert_allclose(exs["a.jpg"].boxes, [[2 / 30, 0.0, 1.0, 20 / 40]], atol=1e-6)
    assert exs["png.jpg"].format == "png" and exs["png.jpg"].image[:4] == b"\x89PNG"  # kept, true format
    assert exs["gif.jpg"].format == "jpeg" and exs["gif.jpg"].image[:3] == b"\xff\xd8\xff"  # re-encoded
    assert exs["cmyk.jpg"].format == "jpeg"
    assert exs["gray.jpg"].difficult.tolist() == [1] and exs["gray.jpg"].truncated.tolist() == [1]
    assert exs["a.jpg"].labels.tolist() == [1] and exs["png.jpg"].labels.tolist() == [2]
    from odkit.data.image_io import decode_image

    for e in exs.values():
        assert tuple(decode_image(e.image).shape) == (3, 30, 40)


def test_xml_bomb_and_malformed_xml_fail_cleanly(tmp_path, capsys) -> None:
    root = tmp_path / "ds"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    _save(root / "images" / "a.jpg")
    (root / "annotations" / "a.xml").write_text(_xml("a.jpg", [("cat", 1, 1, 9, 9)]))
    bomb = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]>'
            "<annotation><filename>&lol2;</filename></annotation>")
    (root / "annotations" / "b.xml").write_text(bomb)
    out = tmp_path / "out"
    rc = main(["create-tfrecord", "--format", "voc", "--data_dir", str(root), "--output_path", str(out / "x.record")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "b.xml" in err and "unsafe XML refused" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() or os.listdir(out) == []
    (root / "annotations" / "b.xml").write_text("<annotation><filename>a.jpg</filename><object>")
    with pytest.raises(DataError, match=r"b.xml:1: malformed XML"):
        create_voc_tfrecord(str(root), str(out / "x.record"), log=None)
    assert not out.exists() or os.listdir(out) == []


def test_escaping_file_names_are_refused(tmp_path) -> None:
    root = tmp_path / "ds"
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    _save(tmp_path / "secret.jpg")
    (root / "annotations" / "a.xml").write_text(_xml("../../secret.jpg", [("cat", 1, 1, 9, 9)]))
    with pytest.raises(DataError, match=r"a.xml: image file name '../../secret.jpg' escapes the data folder"):
        create_voc_tfrecord(str(root), str(tmp_path / "o.record"), log=None)
    (root / "annotations" / "a.xml").write_text(_xml("/etc/passwd", [("cat", 1, 1, 9, 9)]))
    with pytest.raises(DataError, match="absolute path"):
        create_voc_tfrecord(str(root), str(tmp_path / "o.record"), log=None)
    coco = {"images": [{"id": 1, "file_name": "../secret.jpg", "width": 40, "height": 30}], "annotations": [],
            "categories": [{"id": 1, "name": "cat"}]}
    (tmp_path / "c.json").write_text(json.dumps(coco))
    with pytest.raises(DataError, match=r"c.json:image id 1: image file name '../secret.jpg' escapes"):
        create_coco_tfrecord(str(tmp_path / "c.json"), str(root / "images"), str(tmp_path / "o.record"), log=None)
    assert not any(p.name.startswith("o.record") for p in tmp_path.iterdir())


def test_csv_converter(shared_dir, tmp_path) -> None:
    rac = shared_dir / "datasets" / "raccoon"
    s = create_csv_tfrecord(str(rac / "data" / "train_labels.csv"), str(rac / "images"),
                            str(tmp_path / "t.record"), num_shards=3, log=None)
    assert s.written == 160 and sum(s.splits["all"].shard_counts) == 160
    exs = _examples(str(tmp_path / "t.record-?????-of-00003"))
    assert sum(e.num_boxes for e in exs) == sum(1 for _ in open(rac / "data" / "train_labels.csv")) - 1
    (tmp_path / "bad.csv").write_text("filename,class,xmin,ymin,xmax,ymax\nraccoon-1.jpg,r,1,2,x,4\n")
    with pytest.raises(DataError, match=r"bad.csv:2: non-numeric"):
        create_csv_tfrecord(str(tmp_path / "bad.csv"), str(rac / "images"), str(tmp_path / "b.record"), log=None)


def test_cli_errors_exit_2(tmp_path, capsys) -> None:
    assert main(["create-pet-tfrecord", "--data_dir", str(tmp_path / "none"), "--output_dir", str(tmp_path)]) == 2
    assert "none: data folder not found" in capsys.readouterr().err
    (tmp_path / "d").mkdir()
    assert main(["create-pet-tfrecord", "--data_dir", str(tmp_path / "d"), "--output_dir", str(tmp_path / "o"),
                 "--faces_only", "false"]) == 2
    assert "faces_only false" in capsys.readouterr().err
    assert main(["create-pet-tfrecord", "--data_dir", str(tmp_path / "d"), "--output_dir", str(tmp_path / "o")]) == 2
    assert "trainval.txt: examples list not found" in capsys.readouterr().err
    (tmp_path / "lm.pbtxt").write_text("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\n")
    assert main(["create-tfrecord", "--format", "csv", "--csv_path", str(tmp_path / "x.csv"), "--image_dir",
                 str(tmp_path / "d"), "--output_path", str(tmp_path / "o" / "x.record"),
                 "--label_map_path", str(tmp_path / "lm.pbtxt")]) == 2
    assert "x.csv: CSV file not found" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
