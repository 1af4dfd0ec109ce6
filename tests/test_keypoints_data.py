"""Keypoints through the data layer: tf.Example keys, the COCO converter, `records inspect` (issue 16)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from odkit.cli import main
from odkit.data.example import decode_detection_example, encode_detection_example, encode_from
from odkit.data.label_map import load_label_map, parse_label_map
from odkit.errors import DataError
from odkit.protos import example_pb2

COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")


def _person(rng: np.random.Generator, w: int, h: int, ann_id: int, image_id: int) -> dict:
    x0, y0 = float(rng.uniform(0, w / 2)), float(rng.uniform(0, h / 2))
    bw, bh = float(rng.uniform(20, w / 2 - 1)), float(rng.uniform(20, h / 2 - 1))
    kps: list[float] = []
    for k in range(17):
        v = int(rng.choice([0, 1, 2], p=[0.2, 0.2, 0.6])) if k else 2
        x, y = (round(float(rng.uniform(x0, x0 + bw)), 2), round(float(rng.uniform(y0, y0 + bh)), 2)) if v else (0, 0)
        kps += [x, y, v]
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": [x0, y0, bw, bh], "iscrowd": 0,
            "area": bw * bh, "keypoints": kps, "num_keypoints": sum(1 for v in kps[2::3] if v)}


@pytest.fixture()
def coco_keypoints(shared_dir, tmp_path):
    """A COCO person-keypoints JSON over 3 real raccoon images, 2 persons each (+ one unannotated cat)."""
    image_dir = shared_dir / "datasets" / "raccoon" / "images"
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i, name in enumerate(["raccoon-1.jpg", "raccoon-10.jpg", "raccoon-100.jpg"], start=1):
        w, h = Image.open(image_dir / name).size
        images.append({"id": i, "file_name": name, "width": w, "height": h})
        anns += [_person(rng, w, h, 10 * i + j, i) for j in range(2)]
    anns.append({"id": 99, "image_id": 1, "category_id": 2, "bbox": [5, 5, 30, 30], "iscrowd": 0, "area": 700.0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS),
                            "skeleton": [[16, 14], [14, 12]]}, {"id": 2, "name": "cat"}]}
    path = tmp_path / "person_keypoints.json"
    path.write_text(json.dumps(data))
    return path, image_dir, data


def test_coco_keypoints_to_tfrecord_to_inspect_json(coco_keypoints, tmp_path, capsys) -> None:
    ann, image_dir, data = coco_keypoints
    out = tmp_path / "out" / "kp.record"
    assert main(["create-tfrecord", "--format", "coco", "--annotations_file", str(ann), "--image_dir",
                 str(image_dir), "--output_path", str(out)]) == 0
    capsys.readouterr()
    lm = load_label_map(tmp_path / "out" / "label_map.pbtxt")
    assert lm.keypoints_of(1) == tuple(enumerate(COCO_KEYPOINTS)) and lm.keypoints_of(2) == ()
    assert main(["records", "inspect", f"{out}-00000-of-00001", "--json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["filename"] for x in lines] == ["raccoon-1.jpg", "raccoon-10.jpg", "raccoon-100.jpg"]
    by_id = {a["id"]: a for a in data["annotations"]}
    sizes = {im["file_name"]: (im["width"], im["height"]) for im in data["images"]}
    for i, rec in enumerate(lines, start=1):
        w, h = sizes[rec["filename"]]
        persons = [by_id[10 * i], by_id[10 * i + 1]] + ([by_id[99]] if i == 1 else [])
        assert len(rec["keypoints"]) == len(persons) and rec["keypoint_names"] == list(COCO_KEYPOINTS)
        for got, vis, a in zip(rec["keypoints"], rec["keypoint_visibility"], persons):
            triples = np.asarray(a.get("keypoints", [0] * 51), np.float64).reshape(17, 3)
            assert vis == triples[:, 2].astype(int).tolist()
            np.testing.assert_allclose(np.asarray(got), np.stack([triples[:, 1] / h, triples[:, 0] / w], 1),
                                       atol=1e-6)
    assert main(["records", "inspect", f"{out}-00000-of-00001"]) == 0
    labelled = sum(1 for a in data["annotations"] for v in a.get("keypoints", [])[2::3] if v)
    assert f"keypoints: 7 objects x 17, {labelled} labelled" in capsys.readouterr().out
    # the drawing shows them: a labelled keypoint's pixel takes the class colour
    draw_dir = tmp_path / "drawn"
    assert main(["records", "inspect", f"{out}-00000-of-00001", "--draw", "1", "--out", str(draw_dir)]) == 0
    drawn = np.asarray(Image.open(next(draw_dir.iterdir())).convert("RGB"), np.int32)
    plain = np.asarray(Image.open(image_dir / "raccoon-1.jpg").convert("RGB"), np.int32)
    rec = lines[0]
    ys, xs = [], []
    for obj, vis in zip(rec["keypoints"][:2], rec["keypoint_visibility"][:2]):
        for (y, x), v in zip(obj, vis):
            if v:
                ys.append(int(y * plain.shape[0]))
                xs.append(int(x * plain.shape[1]))
    changed = np.abs(drawn[ys, xs] - plain[ys, xs]).sum(axis=1) > 60
    assert changed.mean() > 0.8  # dots over labelled keypoints (JPEG re-encoding blurs a few)


def test_example_keypoint_round_trip_and_tf_defaults() -> None:
    kps = np.array([[[0.1, 0.2], [0.3, 0.4]], [[0.5, 0.6], [np.nan, np.nan]]], np.float32)
    data = encode_detection_example(b"\xff\xd8xx", format="jpeg", height=4, width=4, boxes=[[0, 0, 1, 1]] * 2,
                                    labels=[1, 1], keypoints=kps, keypoint_visibility=[[2, 1], [2, 0]],
                                    keypoint_texts=["a", "b"])
    f = example_pb2.Example.FromString(data).features.feature
    assert list(f["image/object/keypoint/x"].float_list.value)[:3] == pytest.approx([0.2, 0.4, 0.6])
    assert list(f["image/object/keypoint/visibility"].int64_list.value) == [2, 1, 2, 0]
    assert list(f["image/object/keypoint/num"].int64_list.value) == [2, 1]
    assert [t.decode() for t in f["image/object/keypoint/text"].bytes_list.value] == ["a", "b", "a", "b"]
    ex = decode_detection_example(data)
    assert ex.num_keypoints == 2 and ex.keypoint_visibility.tolist() == [[2, 1], [2, 0]]
    np.testing.assert_array_equal(ex.keypoints, kps)
    again = decode_detection_example(encode_from(ex.select(np.array([False, True]))))
    assert again.keypoint_visibility.tolist() == [[2, 0]] and again.keypoint_texts == ["a", "b"]
    # no visibility in the record: TF's default, 2 for finite coordinates and 0 for NaN
    ex2 = example_pb2.Example.FromString(data)
    del ex2.features.feature["image/object/keypoint/visibility"]
    assert decode_detection_example(ex2.SerializeToString()).keypoint_visibility.tolist() == [[2, 2], [2, 0]]
    with pytest.raises(DataError, match="num_keypoints"):
        decode_detection_example(data, num_keypoints=17)
    assert decode_detection_example(data, num_keypoints=2).num_keypoints == 2


def test_label_map_keypoints_parse_and_write(tmp_path) -> None:
    lm = parse_label_map("item { id: 1 name: '/m/01g317' display_name: 'person' "
                         "keypoints { id: 0 label: 'nose' } keypoints { id: 5 label: 'left_shoulder' } }\n"
                         "item { id: 2 name: 'cat' }")
    assert lm.keypoints_of(1) == ((0, "nose"), (5, "left_shoulder")) and lm.keypoints_of(2) == ()
    from odkit.data.label_map import write_label_map

    again = load_label_map(write_label_map(lm, tmp_path / "l.pbtxt").path)
    assert again.keypoints == lm.keypoints


def test_coco_keypoint_errors(tmp_path, capsys) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "a.jpg")
    base = {"images": [{"id": 1, "file_name": "a.jpg"}],
            "categories": [{"id": 1, "name": "person", "keypoints": ["a", "b"]}]}
    bad = dict(base, annotations=[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 9, 9],
                                   "keypoints": [1, 2, 2]}])
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    rc = main(["create-tfrecord", "--format", "coco", "--annotations_file", str(tmp_path / "bad.json"),
               "--image_dir", str(tmp_path), "--output_path", str(tmp_path / "o" / "x.record")])
    err = capsys.readouterr().err
    assert rc == 2 and "expected 6 (x, y, v for 2 keypoints)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_input_loader_gives_keypoints_only_when_asked(coco_keypoints, tmp_path) -> None:
    from google.protobuf import text_format

    from odkit.inputs.builder import build_input_loader
    from odkit.protos import pipeline_pb2

    ann, image_dir, data = coco_keypoints
    out = tmp_path / "kp.record"
    assert main(["create-tfrecord", "--format", "coco", "--annotations_file", str(ann), "--image_dir",
                 str(image_dir), "--output_path", str(out)]) == 0
    flip = " ".join(f"keypoint_flip_permutation: {i}" for i in (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13,
                                                                 16, 15))
    cfg = text_format.Parse(f"""
      model {{ ssd {{ num_classes: 2 image_resizer {{ fixed_shape_resizer {{ height: 64 width: 64 }} }} }} }}
      train_config {{ data_augmentation_options {{ random_horizontal_flip {{ probability: 1.0 {flip} }} }} }}
      train_input_reader {{ num_keypoints: 17 shuffle: false tf_record_input_reader {{ input_path: "{out}-00000-of-00001" }} }}
    """, pipeline_pb2.TrainEvalPipelineConfig())
    loader = build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                batch_size=3, num_workers=0)
    gt = next(iter(loader))["groundtruth"]
    assert gt["keypoints"].shape == (3, 100, 17, 2) and gt["keypoint_visibilities"].dtype == torch.bool
    first = data["annotations"][0]  # image 1, person 10: flipped, left/right swapped
    w, h = data["images"][0]["width"], data["images"][0]["height"]
    triples = np.asarray(first["keypoints"], np.float64).reshape(17, 3)
    perm = [0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15]
    vis = triples[perm, 2] > 0
    assert gt["keypoint_visibilities"][0, 0].numpy().tolist() == vis.tolist()
    expected = np.stack([triples[perm, 1] / h, 1.0 - triples[perm, 0] / w], 1) * vis[:, None]
    np.testing.assert_allclose(gt["keypoints"][0, 0].numpy(), expected, atol=1e-6)
    # records preview draws them
    from odkit.workflows.preview import render_grid

    batch = next(iter(loader))
    item = {"image": batch["images"][0], "true_shape": [64, 64], "boxes": [], "classes": [1], "source_id": "x",
            "keypoints": batch["groundtruth"]["keypoints"][0, :1].numpy(),
            "keypoint_visibilities": batch["groundtruth"]["keypoint_visibilities"][0, :1].numpy()}
    plain_grid = np.asarray(render_grid([dict(item, keypoints=item["keypoints"][:0])], {}), np.int32)
    grid = np.asarray(render_grid([item], {}), np.int32)
    pts = item["keypoints"][0][item["keypoint_visibilities"][0]] * 64
    rows, cols = (pts[:, 0].astype(int) + 4).clip(0, 67), (pts[:, 1].astype(int) + 4).clip(0, 67)  # 4 px margin
    assert (np.abs(grid[rows, cols] - plain_grid[rows, cols]).sum(1) > 0).mean() > 0.8
    cfg.train_input_reader.num_keypoints = 0
    cfg.train_config.ClearField("data_augmentation_options")
    plain = next(iter(build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                         batch_size=3, num_workers=0)))["groundtruth"]
    assert "keypoints" not in plain and "keypoint_visibilities" not in plain
    # image/object/area (the COCO annotation area, as TF's converter) and is_crowd reach the groundtruth for eval
    areas = [a["area"] for a in data["annotations"] if a["image_id"] == 1]
    np.testing.assert_allclose(plain["area"][0, :3].numpy(), areas, rtol=1e-6)
    assert plain["is_crowd"].dtype == torch.bool and not plain["is_crowd"].any()
