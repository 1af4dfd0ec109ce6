"""CenterNet keypoint task parity with the TF OD API on TF's own losses and postprocess for given prediction
tensors (no weights involved): fixture `$ODKIT_TFOD_FIXTURES/centernet_kpts_pieces/pieces.npz`, written by
`make_kpts_pieces.py` (kept next to it, with its `kp_label_map.pbtxt`) with the TF venv; skipped without.

The config (in the fixture): 3 classes, the keypoint task on class 2 with 4 keypoints (per-keypoint std,
offset_peak_radius 2, per_keypoint_offset, score_distance_ratio ranking, task/loss weights != 1), 64x64 input
(stride 4), groundtruth with an unlabelled keypoint (NaN), an other-class box and a weight-0.5 box, true image
shapes 64x64 and 64x56. Checks: every loss within 1e-5 relative; postprocess (TF run one image at a time):
boxes, scores and classes equal, detection_keypoints / detection_keypoint_scores within 1e-5.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format


@pytest.fixture(scope="module")
def pieces():
    root = os.environ.get("ODKIT_TFOD_FIXTURES")
    path = Path(root) / "centernet_kpts_pieces" / "pieces.npz" if root else None
    if path is None or not path.is_file():
        pytest.skip("no centernet_kpts_pieces fixture (set ODKIT_TFOD_FIXTURES, see the docstring)")
    return path.parent, dict(np.load(path))


def _model(folder: Path, config: str, is_training: bool):
    from odkit.builders.model_builder import build_model
    from odkit.protos import model_pb2

    text = config.replace('keypoint_label_map_path: "kp_label_map.pbtxt"',
                          f'keypoint_label_map_path: "{folder / "kp_label_map.pbtxt"}"')
    return build_model(text_format.Parse(text, model_pb2.DetectionModel()), is_training=is_training)


def _predictions(p: dict) -> dict:
    out = {k[5:]: torch.from_numpy(v).permute(0, 3, 1, 2)[None] for k, v in p.items() if k.startswith("pred/")}
    out["preprocessed_shape"] = torch.tensor([64, 64])
    return out


def test_keypoint_losses_equal_tf(pieces) -> None:
    folder, p = pieces
    model = _model(folder, str(p["config"]), is_training=True)
    b = 2
    m = max(len(p[f"gt/classes_{i}"]) for i in range(b))
    k = p["gt/keypoints_0"].shape[1]
    gt = {"boxes": torch.zeros(b, m, 4), "classes": torch.zeros(b, m, dtype=torch.int64), "weights": torch.zeros(b, m),
          "num_boxes": torch.zeros(b, dtype=torch.int64), "keypoints": torch.zeros(b, m, k, 2),
          "keypoint_visibilities": torch.zeros(b, m, k, dtype=torch.bool)}
    for i in range(b):
        n = len(p[f"gt/classes_{i}"])
        kps = torch.from_numpy(p[f"gt/keypoints_{i}"])
        vis = torch.isfinite(kps).all(-1)
        gt["boxes"][i, :n] = torch.from_numpy(p[f"gt/boxes_{i}"])
        gt["classes"][i, :n] = torch.from_numpy(p[f"gt/classes_{i}"])
        gt["weights"][i, :n] = torch.from_numpy(p[f"gt/weights_{i}"])
        gt["num_boxes"][i] = n
        gt["keypoints"][i, :n] = torch.where(vis[..., None], kps, torch.zeros_like(kps))
        gt["keypoint_visibilities"][i, :n] = vis
    losses = model.loss(_predictions(p), gt, torch.from_numpy(p["true_image_shapes"]).long())
    want = {k[5:]: float(v) for k, v in p.items() if k.startswith("loss/")}
    assert set(want) == set(losses)
    for name, value in want.items():
        assert float(losses[name]) == pytest.approx(value, rel=1e-5), name


def test_keypoint_postprocess_equals_tf(pieces) -> None:
    folder, p = pieces
    model = _model(folder, str(p["config"]), is_training=False).eval()
    with torch.no_grad():
        det = model.postprocess(_predictions(p), torch.from_numpy(p["true_image_shapes"]).long())
    for i in range(2):
        n = int(p["det/num_detections"][i])
        assert int(det["num_detections"][i]) == n
        np.testing.assert_allclose(det["detection_scores"][i, :n].numpy(), p["det/detection_scores"][i, :n], atol=1e-6)
        np.testing.assert_allclose(det["detection_boxes"][i, :n].numpy(), p["det/detection_boxes"][i, :n], atol=1e-5)
        assert (det["detection_classes"][i, :n].numpy() - 1 == p["det/detection_classes"][i, :n]).all()
        np.testing.assert_allclose(det["detection_keypoints"][i, :n].numpy(), p["det/detection_keypoints"][i, :n],
                                   atol=1e-5)
        np.testing.assert_allclose(det["detection_keypoint_scores"][i, :n].numpy(),
                                   p["det/detection_keypoint_scores"][i, :n], atol=1e-5)
    snapped = p["det/detection_keypoint_scores"]
    assert ((snapped > 0) & (snapped != np.float32(0.1))).any()  # some keypoints snapped to candidates
