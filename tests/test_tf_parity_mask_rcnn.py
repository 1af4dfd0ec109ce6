"""Mask R-CNN pieces against the TF OD API itself: `reframe_box_masks_to_image_masks` (float bilinear and uint8
nearest, boxes partly outside the image and sub-pixel boxes) and the Keras `MaskRCNNMaskHead` (automatic conv
depth, batch norm with non-trivial statistics, both upsampling modes) with TF's weights.

Fixture: `$ODKIT_TFOD_FIXTURES/maskrcnn_pieces/pieces.npz`, written by `make_mask_pieces.py` (kept next to it)
with the TF venv (see ../shared/tools/tfod_reference/README.md); skipped without it."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format

from odkit.masks import reframe_box_masks_to_image_masks


@pytest.fixture(scope="module")
def pieces() -> dict[str, np.ndarray]:
    root = os.environ.get("ODKIT_TFOD_FIXTURES")
    path = Path(root) / "maskrcnn_pieces" / "pieces.npz" if root else None
    if path is None or not path.is_file():
        pytest.skip("no maskrcnn_pieces fixture (set ODKIT_TFOD_FIXTURES, see the docstring)")
    return dict(np.load(path))


def test_reframe_equals_tf(pieces):
    got = reframe_box_masks_to_image_masks(pieces["reframe_masks"], pieces["reframe_boxes"], 23, 31)
    ref = pieces["reframe_float"]
    assert got.dtype == np.float32
    # same float32 formula in the TF kernel's order: measured max difference 0 or a few ulps
    assert np.abs(got - ref).max() <= 1e-6, np.abs(got - ref).max()
    got8 = reframe_box_masks_to_image_masks(pieces["reframe_u8_in"], pieces["reframe_boxes"], 23, 31)
    np.testing.assert_array_equal(got8, pieces["reframe_u8"])


@pytest.mark.parametrize("up", [0, 1])
def test_mask_head_equals_tf(pieces, up):
    from odkit.builders.hyperparams_builder import build_conv_hyperparams
    from odkit.models.faster_rcnn_heads import MaskRCNNMaskHead
    from odkit.protos import hyperparams_pb2

    hp = build_conv_hyperparams(text_format.Parse(
        "op: CONV regularizer { l2_regularizer { weight: 0.0 } } "
        "initializer { truncated_normal_initializer { stddev: 0.3 } } "
        "batch_norm { decay: 0.997 epsilon: 0.001 scale: true center: true }", hyperparams_pb2.Hyperparams()), "hp")
    head = MaskRCNNMaskHead(16, 3, hp, mask_height=10, mask_width=10, num_conv_layers=3, conv_depth=0,
                            convolve_then_upsample=bool(up)).eval()
    tf_vars = {k.split("|", 1)[1]: v for k, v in pieces.items() if k.startswith(f"head{up}_var")}

    def conv(module: torch.nn.Module, name: str) -> None:
        module.weight.data = torch.from_numpy(tf_vars[f"{name}|kernel"]).permute(3, 2, 0, 1).contiguous()
        if module.bias is not None:
            module.bias.data = torch.from_numpy(tf_vars[f"{name}|bias"])

    def bn(module: torch.nn.Module, name: str) -> None:
        module.weight.data = torch.from_numpy(tf_vars[f"{name}|gamma"])
        module.bias.data = torch.from_numpy(tf_vars[f"{name}|beta"])
        module.running_mean.data = torch.from_numpy(tf_vars[f"{name}|moving_mean"])
        module.running_var.data = torch.from_numpy(tf_vars[f"{name}|moving_variance"])

    for i, block in enumerate(head.convs):
        conv(block[0], f"MaskPredictor_conv2d_{i}")
        bn(block[1], f"MaskPredictor_batchnorm_{i}")
    if up:
        conv(head.upsample_conv[0], "MaskPredictor_upsample_conv2d")
        bn(head.upsample_conv[1], "MaskPredictor_upsample_batchnorm")
    conv(head.last, "MaskPredictor_last_conv2d")
    with torch.no_grad():
        out = head(torch.from_numpy(pieces["head_features"]).permute(0, 3, 1, 2))
    ref = pieces[f"head{up}_output"][:, 0]  # TF [N, 1, classes, h, w]
    assert out.shape == ref.shape
    scale = float(np.abs(ref).max())
    assert float(np.abs(out.numpy() - ref).max()) <= 1e-5 * scale, float(np.abs(out.numpy() - ref).max()) / scale


# ------------------------------------------------------------------ the whole Mask R-CNN Inception-ResNet-v2
# Fixture `$ODKIT_TFOD_FIXTURES/mask_rcnn_irv2_small`: the zoo mask_rcnn_inception_resnet_v2_1024x1024 config at
# 320x320, 3 classes, 20 proposals, 10 detections, second_stage_batch_size 16, written by the shared
# make_tfod_reference.py patched to also feed groundtruth masks (an ellipse inside each groundtruth box,
# saved as groundtruth/masks_i): checkpoint + eval / train predict, postprocess and losses of the TF OD API.
# (It is a faster_rcnn fixture too: tests/test_tf_parity_frcnn.py checks the box path on it.)


@pytest.fixture(scope="module")
def full():
    root = os.environ.get("ODKIT_TFOD_FIXTURES")
    d = Path(root) / "mask_rcnn_irv2_small" if root else None
    if d is None or not (d / "reference.npz").is_file():
        pytest.skip("no mask_rcnn_irv2_small fixture (set ODKIT_TFOD_FIXTURES, see the comment above)")
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.tfcompat import open_tf_checkpoint
    from odkit.tfcompat.mapping import map_tf_variables

    torch.set_num_threads(max(1, torch.get_num_threads()))
    config = load(d / "pipeline.config")
    ref = dict(np.load(d / "reference.npz"))
    ckpt = open_tf_checkpoint(d / "checkpoint")
    model = build_model(config.model, is_training=False)
    plan = map_tf_variables(model, config.model, ckpt)
    plan.load_into(model, ckpt)
    return {"ref": ref, "model": model.eval(), "plan": plan}


def test_full_plan_fills_everything(full):
    assert full["plan"].complete, full["plan"].describe_problems()
    assert any(m.odkit_name.startswith("mask_head.") for m in full["plan"].maps)


def test_detection_masks_on_tf_features_and_detections(full):
    """Third stage at inference fed TF's features and TF's final boxes / classes: crops, box classifier
    (mixed_7a .. conv_7b), mask head logits and the class-gathered sigmoid masks equal TF's."""
    ref, model = full["ref"], full["model"]
    feats = torch.from_numpy(ref["eval/predict/rpn_features_to_crop_0"]).permute(0, 3, 1, 2).contiguous()
    boxes = torch.from_numpy(ref["eval/predict/detection_boxes"])
    classes = torch.from_numpy(ref["eval/predict/detection_classes"])  # 0-based, as odkit's NMS classes
    b, k = classes.shape
    pred = {"rpn_features_to_crop": feats, "preprocessed_shape": torch.tensor([320, 320])}
    windows = torch.tensor([[0.0, 0.0, 1.0, 1.0]] * b)
    with torch.no_grad():
        masks = model._detection_masks(pred, boxes, classes, torch.ones(b, k, dtype=torch.bool), windows)
        logits = model.mask_head(model._box_features([feats], boxes, pred["preprocessed_shape"]))
    tf_logits = ref["eval/predict/mask_predictions"]
    rel = float(np.abs(logits.numpy() - tf_logits).max() / np.abs(tf_logits).max())
    assert rel <= 1e-4, rel
    diff = float(np.abs(masks.numpy() - ref["eval/predict/detection_masks"]).max())
    assert diff <= 1e-4, diff


def test_end_to_end_detections_and_masks(full):
    """odkit from TF's preprocessed images: the same detections (class, score, box) and masks."""
    ref, model = full["ref"], full["model"]
    x = torch.from_numpy(ref["eval/preprocess/preprocessed_inputs"]).permute(0, 3, 1, 2).contiguous()
    shapes = torch.from_numpy(ref["eval/preprocess/true_image_shapes"]).long()
    with torch.no_grad():
        det = model.postprocess(model.predict(x, shapes), shapes)
    n = ref["eval/postprocess/num_detections"].astype(int)
    np.testing.assert_array_equal(det["num_detections"].numpy().astype(int), n)
    for i in range(len(n)):
        k = int(n[i])
        assert det["detection_classes"][i, :k].tolist() == (ref["eval/postprocess/detection_classes"][i, :k] + 1).tolist()
        np.testing.assert_allclose(det["detection_scores"][i, :k], ref["eval/postprocess/detection_scores"][i, :k],
                                   atol=1e-4)
        np.testing.assert_allclose(det["detection_boxes"][i, :k], ref["eval/postprocess/detection_boxes"][i, :k],
                                   atol=1e-4)
        np.testing.assert_allclose(det["detection_masks"][i, :k], ref["eval/postprocess/detection_masks"][i, :k],
                                   atol=1e-3)


def test_mask_loss_on_tf_training_predictions(full):
    """TF's training mask logits on TF's sampled proposals + the groundtruth masks -> the same mask_loss
    (targets cropped from the masks with crop_and_resize, class-selected logits, sigmoid cross entropy)."""
    ref, model = full["ref"], full["model"]
    props = torch.from_numpy(ref["train/predict/proposal_boxes_normalized"])
    b, p = props.shape[:2]
    logits = torch.from_numpy(ref["train/predict/mask_predictions"])
    m = max(len(ref[f"groundtruth/class_ids_{i}"]) for i in range(b))
    gt = {"boxes": torch.zeros(b, m, 4), "classes": torch.zeros(b, m, dtype=torch.int64),
          "weights": torch.zeros(b, m), "num_boxes": torch.zeros(b, dtype=torch.int64),
          "masks": torch.zeros(b, m, 320, 320, dtype=torch.uint8)}
    for i in range(b):
        n = len(ref[f"groundtruth/class_ids_{i}"])
        gt["boxes"][i, :n] = torch.from_numpy(ref[f"groundtruth/boxes_{i}"])
        gt["classes"][i, :n] = torch.from_numpy(ref[f"groundtruth/class_ids_{i}"]).long()
        gt["weights"][i, :n] = 1.0
        gt["num_boxes"][i] = n
        gt["masks"][i, :n] = torch.from_numpy(ref[f"groundtruth/masks_{i}"])
    pred = {"proposal_boxes": props, "num_proposals": torch.from_numpy(ref["train/predict/num_proposals"]).long(),
            "mask_predictions": logits.reshape(b, p, *logits.shape[1:])}
    with torch.no_grad():
        loss = float(model._mask_loss(pred, gt))
    tf = float(ref["train/loss/Loss/BoxClassifierLoss/mask_loss"])
    assert abs(loss - tf) <= 1e-4 * abs(tf), (loss, tf)
