"""evaluate_model with a fake model and loader: frames, metrics, pictures and the files in D/eval."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from odkit.evaluation.evaluator import evaluate_model, gt_to_original_frame
from odkit.evaluation.outputs import format_table, write_eval_outputs

# true-image-normalized boxes per image; the fake model "detects" DETS, groundtruth is GT
GT = [np.array([[0.1, 0.2, 0.5, 0.6], [0.5, 0.5, 0.9, 0.95]], np.float32), np.array([[0.2, 0.1, 0.8, 0.7]], np.float32)]
GT_CLASSES = [np.array([1, 2]), np.array([2])]
PAD_H, PAD_W, TRUE_H, TRUE_W = 64, 64, 48, 64
ORIG = [(96, 128), (120, 160)]


class FakeModel(torch.nn.Module):
    def __init__(self, dets: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.dets = dets
        self.calls = 0

    def preprocess(self, images):
        return images.float()

    def predict(self, images):
        return {"x": images}

    def postprocess(self, pred, tis):
        b = pred["x"].shape[0]
        k = 5
        out = {"detection_boxes": torch.zeros(b, k, 4), "detection_scores": torch.zeros(b, k),
               "detection_classes": torch.zeros(b, k), "num_detections": torch.zeros(b)}
        for i in range(b):
            boxes, scores, classes = self.dets[self.calls + i]
            n = len(scores)
            out["detection_boxes"][i, :n] = torch.from_numpy(boxes)
            out["detection_scores"][i, :n] = torch.from_numpy(scores)
            out["detection_classes"][i, :n] = torch.from_numpy(classes.astype(np.float32))
            out["num_detections"][i] = n
        self.calls += b
        return out

    def loss(self, pred, gt, tis):
        return {"Loss/localization_loss": torch.tensor(0.25), "Loss/classification_loss": torch.tensor(0.5)}


def _batches(with_original: bool):
    yield_list = []
    for i in range(2):
        m = 3  # padded box count
        boxes = torch.zeros(1, m, 4)
        classes = torch.zeros(1, m, dtype=torch.int64)
        n = len(GT[i])
        # groundtruth is given in the padded model-input frame
        boxes[0, :n] = torch.from_numpy(GT[i] * np.array([TRUE_H / PAD_H, TRUE_W / PAD_W] * 2, np.float32))
        classes[0, :n] = torch.from_numpy(GT_CLASSES[i])
        batch = {
            "images": torch.full((1, 3, PAD_H, PAD_W), 100, dtype=torch.uint8),
            "true_image_shapes": torch.tensor([[TRUE_H, TRUE_W, 3]]),
            "groundtruth": {"boxes": boxes, "classes": classes, "weights": (classes > 0).float(),
                            "num_boxes": torch.tensor([n])},
            "source_ids": [f"img{i}"],
            "filenames": [f"img{i}.jpg"],
            "original_sizes": torch.tensor([ORIG[i]]),
        }
        if with_original:
            batch["original_images"] = [torch.full((3, *ORIG[i]), 50, dtype=torch.uint8)]
        yield_list.append(batch)
    return yield_list


def _eval_config(**kw):
    base = dict(metrics_set=["coco_detection_metrics", "pascal_voc_detection_metrics"], num_visualizations=2,
                include_metrics_per_category=True, min_score_threshold=0.5, max_num_boxes_to_visualize=20,
                export_path="", visualization_export_dir="")
    base.update(kw)
    return SimpleNamespace(**base)


def test_gt_frame_conversion():
    box = GT[0][:1] * np.array([TRUE_H / PAD_H, TRUE_W / PAD_W] * 2, np.float32)
    out = gt_to_original_frame(box, (PAD_H, PAD_W), np.array([TRUE_H, TRUE_W]), np.array(ORIG[0]))
    np.testing.assert_allclose(out[0], [9.6, 25.6, 48.0, 76.8], rtol=1e-5)


def test_perfect_detections_give_map_one():
    dets = [(GT[i], np.array([0.9] * len(GT[i]), np.float32), GT_CLASSES[i]) for i in range(2)]
    metrics, extras = evaluate_model(FakeModel(dets), _batches(True), _eval_config(), {1: "cat", 2: "dog"})
    assert metrics["DetectionBoxes_Precision/mAP"] == pytest.approx(1.0)
    assert metrics["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(1.0)
    assert metrics["DetectionBoxes_PerformanceByCategory/mAP/dog"] == pytest.approx(1.0)
    assert metrics["Loss/classification_loss"] == pytest.approx(0.5)
    assert metrics["Loss/total_loss"] == pytest.approx(0.75)
    assert extras.num_images == 2
    assert len(extras.pictures) == 2
    # original image 96x128 -> side by side (14 + 96) x (2*128 + gap), titled
    assert extras.pictures[0][1].shape[0] == 14 + 96 and extras.pictures[0][1].shape[1] > 256


def test_wrong_class_and_shifted_boxes_lower_the_score():
    shifted = GT[0] + np.array([0.2, 0.2, 0.2, 0.2], np.float32)  # IoU well below 0.5
    dets = [(shifted, np.array([0.9, 0.8], np.float32), GT_CLASSES[0]),
            (GT[1], np.array([0.7], np.float32), np.array([1]))]  # right box, wrong class
    metrics, _ = evaluate_model(FakeModel(dets), _batches(False), _eval_config(), {1: "cat", 2: "dog"})
    assert metrics["DetectionBoxes_Precision/mAP"] == pytest.approx(0.0)
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == pytest.approx(0.0)


def test_half_right_gives_expected_pascal_ap():
    # image 0: cat found, dog missed; image 1: dog found -> cat AP 1, dog AP 0.5
    dets = [(GT[0][:1], np.array([0.9], np.float32), np.array([1])),
            (GT[1], np.array([0.8], np.float32), np.array([2]))]
    metrics, _ = evaluate_model(FakeModel(dets), _batches(False), _eval_config(), {1: "cat", 2: "dog"})
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/cat"] == pytest.approx(1.0)
    assert metrics["PascalBoxes_PerformanceByCategory/AP@0.5IOU/dog"] == pytest.approx(0.5)
    assert metrics["PascalBoxes_Precision/mAP@0.5IOU"] == pytest.approx(0.75)


def test_eval_outputs_written(tmp_path: Path):
    dets = [(GT[i], np.array([0.9] * len(GT[i]), np.float32), GT_CLASSES[i]) for i in range(2)]
    cfg = _eval_config(export_path=str(tmp_path / "dets.json"), visualization_export_dir=str(tmp_path / "vis"))
    metrics, extras = evaluate_model(FakeModel(dets), _batches(True), cfg, {1: "cat", 2: "dog"})
    eval_dir = tmp_path / "model" / "eval"
    write_eval_outputs(eval_dir, 7, metrics, extras, cfg, {1: "cat", 2: "dog"})
    saved = json.loads((eval_dir / "metrics-ckpt-7.json").read_text())
    assert saved == json.loads((eval_dir / "metrics.json").read_text())
    assert saved["DetectionBoxes_Precision/mAP"] == pytest.approx(1.0)
    assert (eval_dir / "pr_curves.png").stat().st_size > 1000
    assert (eval_dir / "side_by_side_1.png").is_file()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(eval_dir))
    events.Reload()
    tags = events.Tags()
    assert "DetectionBoxes_Precision/mAP" in tags["scalars"] and "Loss/total_loss" in tags["scalars"]
    assert [e.step for e in events.Scalars("DetectionBoxes_Precision/mAP")] == [7]
    assert events.Scalars("DetectionBoxes_Precision/mAP")[0].value == pytest.approx(1.0)
    assert {"eval_side_by_side_0", "eval_side_by_side_1"} <= set(tags["images"])
    assert sorted(p.name for p in (tmp_path / "vis").iterdir()) == ["export-7-image-0.png", "export-7-image-1.png"]
    dets_json = json.loads((tmp_path / "dets.json").read_text())
    assert len(dets_json) == 3 and {d["category_id"] for d in dets_json} == {1, 2}
    assert not list(eval_dir.glob(".*tmp*"))
    table = format_table(metrics, 7)
    assert "DetectionBoxes_Precision/mAP " in table and "1.0000" in table


def test_unsupported_metrics_set_is_refused():
    from odkit.errors import UnsupportedError

    with pytest.raises(UnsupportedError, match="oid_V2_detection_metrics"):
        evaluate_model(FakeModel([]), [], _eval_config(metrics_set=["oid_V2_detection_metrics"]), {1: "a"})


def test_side_by_side_draws_only_confident_detections():
    from odkit.evaluation.visualize import side_by_side

    img = np.full((60, 80, 3), 128, np.uint8)
    box = np.array([[0.2, 0.2, 0.8, 0.8]], np.float32)
    low = side_by_side(img, box, np.array([1]), box, np.array([0.3]), np.array([1]), {1: "a"})
    high = side_by_side(img, box, np.array([1]), box, np.array([0.9]), np.array([1]), {1: "a"})
    w = 80
    gap = low.shape[1] - 2 * w
    right_low, right_high = low[14:, w + gap:], high[14:, w + gap:]
    assert np.all(right_low == 128)  # below min_score_threshold: nothing drawn
    assert np.any(right_high != 128)
    assert np.any(low[14:, :w] != 128)  # groundtruth always drawn
