"""CenterNet parity with the TF OD API on fixtures written by the TF OD API itself
(`../shared/tools/tfod_reference/make_tfod_reference.py`, with a local patch for CenterNet's missing
raw_detection_scores in its sanity printout; too large to ship): every subfolder of `$ODKIT_TFOD_FIXTURES`
whose pipeline.config is a center_net; skipped without.

Made with (TF venv, see the tool's README), for each of
  centernet_resnet50_v1_fpn_512: centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config with
      type "resnet_v1_50_fpn", num_classes 37;
  centernet_r50v2: the same with type "resnet_v2_50";
  centernet_r18fpn: the same with type "resnet_v1_18_fpn", min/max_dimension 256;
  centernet_hg10: centernet_hourglass104_512x512_coco17_tpu-8.config with type "hourglass_10",
      num_classes 37, min/max_dimension 256; centernet_hg10_dw: the same with use_depthwise: true (heads);
  centernet_hg104_128: centernet_hourglass104_512x512_coco17_tpu-8.config with num_classes 37,
      min/max_dimension 128 (Hourglass-104 itself: 2 feature outputs, intermediate layers; 733 MB);
  centernet_mnv2_fpn_sep: the ResNet config with type "mobilenet_v2_fpn_sep_conv", depth_multiplier 0.5,
      upsampling_interpolation "bilinear", num_classes 37, min/max_dimension 256 (depth_multiplier 1.0 makes
      the TF OD API download ImageNet weights); centernet_mnv2: the same with type "mobilenet_v2" (no FPN);
  make_tfod_reference.py CONFIG $ODKIT_TFOD_FIXTURES/NAME \
      oxford_pets_subset/images/Abyssinian_1.jpg oxford_pets_subset/images/american_bulldog_141.jpg

Checks (measured on that fixture, machine loaded):
- preprocess from the uint8 images (keep_aspect_ratio_resizer + the extractor's normalisation): <= 1e-4
  (measured 0.0 for the ResNet50 v1 FPN caffe normalisation);
- the TF checkpoint maps completely (every model variable consumed, every odkit tensor filled);
- eval predict from TF's preprocessed batch (chained through the extractor and heads, every feature output):
  max|odkit - TF| <= 1e-4 * max|TF| (measured: ResNet50 v1 FPN 3.4e-6 .. 4.2e-6, ResNet18 v1 FPN 1.2e-6 .. 1.3e-6, ResNet50 v2 2.7e-5 .. 4.1e-5,
  Hourglass-10 1.5e-6 .. 1.9e-6, Hourglass-104 5.5e-6 .. 9.8e-6, MobileNet v2 FPN sep-conv 7.6e-7 .. 9.4e-7, MobileNet v2 2.8e-5 .. 4.1e-5, separable heads 1.2e-6 .. 1.7e-6);
- postprocess on TF's own eval predictions: scores within 1e-6, boxes within 1e-6, classes equal (measured
  identical up to 3.6e-7 on ResNet50 v1 FPN; on the ResNet v2 fixture 2 pairs of peaks with scores 1 ulp apart
  come out swapped, see the test);
- losses on TF's own training-mode predictions with the fixture's groundtruth: within 1e-5 relative
  (measured equal).
Not asserted: training-mode predict chained from the same batch differs from TF by ~1e-3 of scale while odkit
float32 is within 4e-6 of odkit float64 (batch-statistics BN on a random-weight ResNet with very large
activations; the cause is not pinned down).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.slow


def _fixture_dirs() -> list[Path]:
    env = os.environ.get("ODKIT_TFOD_FIXTURES")
    if not env or not Path(env).is_dir():
        return []
    return sorted(d for d in Path(env).iterdir()
                  if (d / "reference.npz").is_file() and (d / "pipeline.config").is_file()
                  and "center_net {" in (d / "pipeline.config").read_text())


FIXTURES = _fixture_dirs()
HEADS = ("object_center", "box/scale", "box/offset")


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _nchw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).contiguous()


@pytest.fixture(scope="module", params=FIXTURES or [None], ids=lambda p: p.name if p else "none")
def fx(request):
    if request.param is None:
        pytest.skip("no CenterNet TF OD API fixture (make one and set ODKIT_TFOD_FIXTURES, see the docstring)")
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.tfcompat import open_tf_checkpoint
    from odkit.tfcompat.mapping import map_tf_variables

    d = request.param
    config = load(d / "pipeline.config")
    ref = dict(np.load(d / "reference.npz"))
    ckpt = open_tf_checkpoint(d / "checkpoint")
    model = build_model(config.model, is_training=False)
    plan = map_tf_variables(model, config.model, ckpt)
    plan.load_into(model, ckpt)
    model.eval()
    x = _nchw(ref["eval/preprocess/preprocessed_inputs"])
    shapes = torch.from_numpy(ref["eval/preprocess/true_image_shapes"]).long()
    with torch.no_grad():
        pred = model.predict(x)
    return {"ref": ref, "model": model, "plan": plan, "ckpt": ckpt, "pred": pred, "shapes": shapes,
            "config": config}


def test_every_variable_consumed_and_every_tensor_filled(fx):
    plan = fx["plan"]
    assert plan.unmatched_tf == [] and plan.unfilled == [] and plan.mismatched == []
    assert len(plan.maps) == len([k for k in fx["ckpt"].variables() if k.startswith("model/")])


def _outputs(ref: dict, prefix: str, key: str) -> list[np.ndarray]:
    out, i = [], 0
    while f"{prefix}/{key}_{i}" in ref:
        out.append(ref[f"{prefix}/{key}_{i}"])
        i += 1
    return out


def test_eval_predict_matches_tf(fx):
    for k in HEADS:
        tf = _outputs(fx["ref"], "eval/predict", k)
        assert len(tf) == fx["pred"][k].shape[0] > 0
        for i, t in enumerate(tf):
            assert _rel(fx["pred"][k][i].permute(0, 2, 3, 1).numpy(), t) <= 1e-4, (k, i)


def test_postprocess_matches_tf(fx):
    """Same ranked detections; where TF's and torch's sigmoid round a score differently by an ulp, two peaks
    whose scores differ by < 1e-6 may come out swapped: each TF detection must then match an odkit detection
    of the same class and box whose score is within 1e-6."""
    ref = fx["ref"]
    pred = {k: torch.stack([_nchw(a) for a in _outputs(ref, "eval/predict", k)]) for k in HEADS}
    with torch.no_grad():
        det = fx["model"].postprocess(pred, fx["shapes"])
    np.testing.assert_allclose(det["detection_scores"].numpy(), ref["eval/postprocess/detection_scores"], atol=1e-6)
    np.testing.assert_array_equal(det["num_detections"].numpy(), ref["eval/postprocess/num_detections"])
    boxes, classes = det["detection_boxes"].numpy(), det["detection_classes"].numpy() - 1
    multi = det["detection_multiclass_scores"].numpy()
    tf_boxes, tf_classes = ref["eval/postprocess/detection_boxes"], ref["eval/postprocess/detection_classes"]
    tf_multi = ref["eval/postprocess/detection_multiclass_scores"]
    scores = det["detection_scores"].numpy()
    swaps = 0
    for b in range(boxes.shape[0]):
        for i in range(boxes.shape[1]):
            if classes[b, i] == tf_classes[b, i] and np.abs(boxes[b, i] - tf_boxes[b, i]).max() <= 1e-6:
                np.testing.assert_allclose(multi[b, i], tf_multi[b, i], atol=1e-6)
                continue
            near = np.abs(scores[b] - scores[b, i]) < 1e-6
            same = (classes[b] == tf_classes[b, i]) & (np.abs(boxes[b] - tf_boxes[b, i]).max(-1) <= 1e-6)
            assert (near & same).any(), (b, i, tf_boxes[b, i], tf_classes[b, i])
            swaps += 1
    assert swaps <= 0.1 * boxes.shape[0] * boxes.shape[1]


def test_losses_match_tf(fx):
    ref = fx["ref"]
    n = ref["eval/preprocess/preprocessed_inputs"].shape[0]
    m = max(len(ref[f"groundtruth/class_ids_{i}"]) for i in range(n))
    boxes, classes, weights = torch.zeros(n, m, 4), torch.zeros(n, m, dtype=torch.int64), torch.zeros(n, m)
    for i in range(n):
        k = len(ref[f"groundtruth/class_ids_{i}"])
        boxes[i, :k] = torch.from_numpy(ref[f"groundtruth/boxes_{i}"])
        classes[i, :k] = torch.from_numpy(ref[f"groundtruth/class_ids_{i}"].astype(np.int64))
        weights[i, :k] = torch.from_numpy(ref[f"groundtruth/weights_{i}"])
    gt = {"boxes": boxes, "classes": classes, "weights": weights, "num_boxes": (classes > 0).sum(1)}
    pred = {k: torch.stack([_nchw(a) for a in _outputs(ref, "train/predict", k)]) for k in HEADS}
    losses = fx["model"].loss(pred, gt, fx["shapes"])
    for k in ("Loss/object_center", "Loss/box/scale", "Loss/box/offset"):
        assert float(losses[k]) == pytest.approx(float(ref[f"train/loss/{k}"]), rel=1e-5), k


def test_preprocess_from_uint8_images_matches_tf(fx):
    """The config's keep_aspect_ratio_resizer (padded) + the extractor's normalisation."""
    from odkit.inputs.resizers import build_image_resizer

    ref = fx["ref"]
    resizer = build_image_resizer(fx["config"].model.center_net.image_resizer)
    for i in range(ref["eval/preprocess/preprocessed_inputs"].shape[0]):
        image = torch.from_numpy(ref[f"input/image_{i}_uint8"]).permute(2, 0, 1)[None].float()
        with torch.no_grad():
            resized, shape = resizer(image)
            ours = fx["model"].preprocess(resized).permute(0, 2, 3, 1).numpy()[0]
        assert shape[0].tolist() == ref["eval/preprocess/true_image_shapes"][i].tolist()
        assert np.abs(ours - ref["eval/preprocess/preprocessed_inputs"][i]).max() <= 1e-4
