"""`odkit eval-json`: COCO files in, the same numbers as pycocotools out; bad files give one-line errors."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from odkit.cli import main


def _files(tmp_path, rng):
    images = [{"id": i} for i in (3, 1, 2)]
    anns, dets = [], []
    for img in (1, 2, 3):
        for _ in range(3):
            x, y = rng.uniform(0, 100, 2)
            w, h = rng.uniform(10, 80, 2)
            c = int(rng.integers(1, 3))
            anns.append({"id": len(anns) + 1, "image_id": img, "category_id": c, "bbox": [x, y, w, h],
                         "area": w * h, "iscrowd": 0})
            dets.append({"image_id": img, "category_id": c, "bbox": [x + 2, y - 1, w, h + 3],
                         "score": float(rng.random())})
            dets.append({"image_id": img, "category_id": 3 - c, "bbox": [x, y, w, h], "score": 0.3})
    gt = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    return gt, dets


def test_eval_json_matches_pycocotools(tmp_path, capsys):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    _files(tmp_path, np.random.default_rng(0))
    rc = main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dets.json"),
               "--json", "--metrics_set", "coco_detection_metrics", "--metrics_set", "pascal_voc_detection_metrics"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(coco_gt, coco_gt.loadRes(str(tmp_path / "dets.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert out["DetectionBoxes_Precision/mAP"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert out["DetectionBoxes_Recall/AR@100 (large)"] == pytest.approx(ev.stats[11], abs=1e-12)
    assert 0.0 < out["PascalBoxes_Precision/mAP@0.5IOU"] <= 1.0


def test_eval_json_table(tmp_path, capsys):
    _files(tmp_path, np.random.default_rng(1))
    assert main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections",
                 str(tmp_path / "dets.json")]) == 0
    out = capsys.readouterr().out
    assert "DetectionBoxes_Precision/mAP@.50IOU" in out


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda gt, d: d.append({"image_id": 99, "category_id": 1, "bbox": [0, 0, 1, 1], "score": 1}),
         "image_id 99 is not in the groundtruth"),
        (lambda gt, d: d[0].update(bbox=[1, 2, 3]), "bbox must be a list of 4 numbers"),
        (lambda gt, d: d[0].update(score="high"), "score must be a finite number"),
        (lambda gt, d: gt["annotations"][0].update(image_id=42), "image_id 42 is not in 'images'"),
    ],
)
def test_bad_files_give_one_line_errors(tmp_path, capsys, mutate, message):
    gt, dets = _files(tmp_path, np.random.default_rng(2))
    mutate(gt, dets)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    rc = main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dets.json")])
    err = capsys.readouterr().err
    assert rc == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_missing_file_and_bad_metrics_set(tmp_path, capsys):
    assert main(["eval-json", "--groundtruth", str(tmp_path / "nope.json"), "--detections", "x"]) == 2
    assert "file not found" in capsys.readouterr().err
    _files(tmp_path, np.random.default_rng(3))
    assert main(["eval-json", "--groundtruth", str(tmp_path / "gt.json"), "--detections", str(tmp_path / "dets.json"),
                 "--metrics_set", "oid_V2_detection_metrics"]) == 2
    assert "not supported" in capsys.readouterr().err
