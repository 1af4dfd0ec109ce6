"""detection_keypoints / detection_keypoint_scores through export (ONNX, TorchScript), Detector, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import FixedResizer, TinyDetector

NK = 3


class TinyKeypointDetector(TinyDetector):
    """TinyDetector + 3 keypoints per detection: box centre, top-left and bottom-right corner (y, x),
    scored centre 0.9 / corners the detection score (so the contract's tensors flow through the graph)."""

    def postprocess(self, prediction, true_image_shapes):
        out = super().postprocess(prediction, true_image_shapes)
        b = out["detection_boxes"]
        centre = torch.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], -1)
        out["detection_keypoints"] = torch.stack([centre, b[..., :2], b[..., 2:]], dim=2)
        s = out["detection_scores"]
        out["detection_keypoint_scores"] = torch.stack([torch.full_like(s, 0.9), s, s], dim=-1)
        return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from odkit.export.exporter import export_model

    torch.manual_seed(0)
    model = TinyKeypointDetector(num_classes=2, score_threshold=0.0)
    out = tmp_path_factory.mktemp("kp") / "export"
    result = export_model(model, FixedResizer(64, 64), out, formats=["onnx", "torchscript"],
                          extra_info={"keypoint_edges": [[0, 1], [0, 2]]})
    assert result.info["outputs"][-2:] == ["detection_keypoints", "detection_keypoint_scores"]
    assert all(v.get("verification") for v in result.info["formats"].values())
    return out


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_detector_returns_keypoints(exported: Path, backend: str) -> None:
    from odkit.inference.detector import Detector

    det = Detector(exported, backend=backend, min_score=0.0, max_boxes=5)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    raw = det.detect_raw(pixels)
    assert raw["detection_keypoints"].shape[-2:] == (NK, 2)
    dets = det.to_detections(raw)
    assert dets and all(d.keypoints is not None and len(d.keypoints) == NK for d in dets)
    for d in dets:
        ymin, xmin, ymax, xmax = d.box
        np.testing.assert_allclose(d.keypoints[0], ((ymin + ymax) / 2, (xmin + xmax) / 2), atol=1e-5)
        np.testing.assert_allclose(d.keypoints[1], (ymin, xmin), atol=1e-5)
        assert d.keypoint_scores[0] == pytest.approx(0.9) and d.keypoint_scores[1] == pytest.approx(d.score)
        js = d.to_dict()
        assert len(js["keypoints"]) == NK and len(js["keypoint_scores"]) == NK
    assert det.keypoint_edges == [(0, 1), (0, 2)]


def test_predict_writes_and_draws_keypoints(exported: Path, tmp_path: Path) -> None:
    from odkit.inference.detector import Detector
    from odkit.inference.predict import predict_images

    img = tmp_path / "a.png"
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(img)
    det = Detector(exported, min_score=0.0)
    summary = predict_images(det, [img], tmp_path / "out", min_score=0.0, max_boxes=3, progress=lambda _m: None)
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    d0 = records[0]["detections"][0]
    assert len(d0["keypoints"]) == NK and d0["keypoint_scores"][0] == pytest.approx(0.9)
    drawn = np.asarray(Image.open(summary.records[0]["output_image"]).convert("RGB"), np.int32)
    y, x = d0["keypoints"][0]
    r, c = min(int(y * 40), 39), min(int(x * 60), 59)
    assert np.abs(drawn[r, c] - 128).sum() > 30  # a keypoint dot over the flat grey image
