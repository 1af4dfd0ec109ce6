"""Mask R-CNN (Faster R-CNN number_of_stages 3): mask head shapes / depth rule, mask loss targets, TF
reframing, builder refusals and a tiny model that overfits a handful of images (mask IoU > 0.7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from torch import nn

from odkit.builders.faster_rcnn_builder import build_faster_rcnn
from odkit.errors import UnsupportedError
from odkit.masks import reframe_box_masks_to_image_masks
from odkit.models.faster_rcnn_heads import MaskRCNNMaskHead, mask_conv_depth
from odkit.models.hyperparams import default_hyperparams
from odkit.protos import faster_rcnn_pb2

TINY = """
num_classes: 3
number_of_stages: 3
image_resizer { fixed_shape_resizer { height: 64 width: 64 } }
feature_extractor { type: 'faster_rcnn_resnet50_keras' }
first_stage_anchor_generator { grid_anchor_generator {
  scales: [0.5, 1.0] aspect_ratios: [1.0] height: 32 width: 32 height_stride: 8 width_stride: 8
  height_offset: 4 width_offset: 4 } }
first_stage_box_predictor_conv_hyperparams {
  op: CONV regularizer { l2_regularizer { weight: 0.0 } }
  initializer { truncated_normal_initializer { stddev: 0.01 } } }
first_stage_box_predictor_depth: 32
first_stage_minibatch_size: 32
first_stage_max_proposals: 32
initial_crop_size: 8
maxpool_kernel_size: 1
maxpool_stride: 1
second_stage_box_predictor { mask_rcnn_box_predictor {
  fc_hyperparams { op: FC regularizer { l2_regularizer { weight: 0.0 } }
    initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } } }
  conv_hyperparams { op: CONV regularizer { l2_regularizer { weight: 0.0 } }
    initializer { truncated_normal_initializer { stddev: 0.01 } } }
  predict_instance_masks: true mask_height: 16 mask_width: 16
  mask_prediction_conv_depth: 32 mask_prediction_num_conv_layers: 2
  share_box_across_classes: true } }
second_stage_batch_size: 16
second_stage_balance_fraction: 0.5
second_stage_post_processing {
  batch_non_max_suppression { score_threshold: 0.0 iou_threshold: 0.5 max_detections_per_class: 4
                              max_total_detections: 4 }
  score_converter: SOFTMAX }
second_stage_localization_loss_weight: 2.0
second_stage_mask_prediction_loss_weight: 4.0
"""


class TinyExtractor(nn.Module):
    """Stride-8 conv stack (the Faster R-CNN extractor interface)."""

    first_stage_features_stride = 8
    proposal_channels = 32
    box_classifier_channels = 32
    backbone_param_prefixes = ("body.",)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = 3
        for out in (16, 32, 32):
            layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.ReLU()]
            ch = out
        self.body = nn.Sequential(*layers)
        self.box_head = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1), nn.ReLU())

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() / 127.5 - 1.0

    def extract_proposal_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def extract_box_classifier_features(self, crops: torch.Tensor) -> torch.Tensor:
        return self.box_head(crops)


def _proto(text: str = TINY):
    return text_format.Parse(text, faster_rcnn_pb2.FasterRcnn())


def tiny_mask_rcnn(is_training: bool = True, text: str = TINY):
    torch.manual_seed(0)
    return build_faster_rcnn(_proto(text), is_training, feature_extractor=TinyExtractor())


def synthetic_masks(n: int = 6, size: int = 64):
    """n images, one shape each: disc (class 1), triangle (2), ring-less cross (3); masks [n, 1, size, size]."""
    g = np.random.default_rng(3)
    images = np.full((n, 3, size, size), 40, np.uint8)
    masks = np.zeros((n, 1, size, size), np.uint8)
    boxes = np.zeros((n, 1, 4), np.float32)
    classes = np.zeros((n, 1), np.int64)
    colors = {1: (230, 30, 30), 2: (30, 230, 30), 3: (30, 30, 230)}
    yy, xx = np.mgrid[0:size, 0:size]
    for i in range(n):
        c = i % 3 + 1
        s = int(g.integers(22, 34))
        y, x = (int(v) for v in g.integers(0, size - s, 2))
        cy, cx = y + s / 2 - 0.5, x + s / 2 - 0.5
        if c == 1:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 <= (s / 2) ** 2
        elif c == 2:
            m = (yy >= y) & (yy < y + s) & (xx >= x) & (xx - x <= (yy - y))
        else:
            t = s // 3
            m = ((yy >= y) & (yy < y + s) & (xx >= x + t) & (xx < x + s - t)) | (
                (xx >= x) & (xx < x + s) & (yy >= y + t) & (yy < y + s - t)
            )
        masks[i, 0] = m
        images[i][:, m] = np.array(colors[c], np.uint8)[:, None]
        ys, xs = np.nonzero(m)
        boxes[i, 0] = [ys.min() / size, xs.min() / size, (ys.max() + 1) / size, (xs.max() + 1) / size]
        classes[i, 0] = c
    gt = {
        "boxes": torch.from_numpy(boxes),
        "classes": torch.from_numpy(classes),
        "weights": torch.ones(n, 1),
        "num_boxes": torch.ones(n, dtype=torch.int64),
        "masks": torch.from_numpy(masks),
    }
    return torch.from_numpy(images), gt


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    return float((a & b).sum() / max((a | b).sum(), 1))


def test_mask_conv_depth_follows_tf():
    # TF: 2 ** round((2 * log2(C) + 3 * log2(K)) / 5)
    assert mask_conv_depth(1536, 90) == 256  # IRv2 box features, COCO: round(8.13)
    assert mask_conv_depth(1024, 1) == 16  # round(4.0)
    assert mask_conv_depth(256, 1) == 8  # round(3.2)
    assert mask_conv_depth(64, 20) == 32  # (12 + 12.97) / 5 = 4.99


@pytest.mark.parametrize("upsample", [False, True])
def test_mask_head_shapes(upsample):
    head = MaskRCNNMaskHead(
        16, 5, default_hyperparams(), mask_height=12, mask_width=12, num_conv_layers=3, conv_depth=0,
        convolve_then_upsample=upsample,
    )
    out = head(torch.randn(4, 16, 6, 6))
    assert out.shape == (4, 5, 12, 12)
    agnostic = MaskRCNNMaskHead(16, 5, default_hyperparams(), mask_height=7, mask_width=9, class_agnostic=True)
    assert agnostic(torch.randn(2, 16, 3, 3)).shape == (2, 1, 7, 9)


def test_mask_loss_untrained_value_and_missing_masks():
    images, gt = synthetic_masks(2)
    model = tiny_mask_rcnn()
    shapes = torch.tensor([[64, 64, 3]] * 2)
    losses = model.loss(model.predict(model.preprocess(images)), gt, shapes)
    assert set(losses) >= {"Loss/BoxClassifierLoss/mask_loss"}
    value = float(losses["Loss/BoxClassifierLoss/mask_loss"].detach())
    # untrained head: logits ~0 -> cross entropy ~ log 2 per pixel, times the weight 4
    assert 4 * 0.6 < value < 4 * 0.8
    del gt["masks"]
    with pytest.raises(ValueError, match="load_instance_masks"):
        model.loss(model.predict(model.preprocess(images)), gt, shapes)


def test_reframe_matches_tf_crop_and_resize_semantics():
    # a box covering the left half of a 4x8 image: the mask's columns stretch over x in [0, 0.5]
    box_mask = np.array([[[0.0, 1.0], [1.0, 0.0]]], np.float32)
    out = reframe_box_masks_to_image_masks(box_mask, np.array([[0.0, 0.0, 1.0, 0.5]]), 3, 5)
    # TF: image pixel (i, j) samples the mask at ((mh-1) * i/(H-1), (mw-1) * (j/(W-1)) / 0.5); outside -> 0
    expected = np.array(
        [[0.0, 0.5, 1.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.0, 0.0], [1.0, 0.5, 0.0, 0.0, 0.0]], np.float32
    )
    np.testing.assert_allclose(out[0], expected, atol=1e-6)
    u8 = reframe_box_masks_to_image_masks(np.ones((2, 3, 3), np.uint8), np.array([[0, 0, 1, 1], [0.5, 0.5, 1, 1]]), 4, 4)
    assert u8.dtype == np.uint8 and u8[0].all() and u8[1].sum() == 4  # x, y in {2/3, 1}
    assert reframe_box_masks_to_image_masks(np.zeros((0, 3, 3), np.float32), np.zeros((0, 4)), 5, 6).shape == (0, 5, 6)


def test_builder_mask_refusals():
    with pytest.raises(UnsupportedError, match="predict_instance_masks"):
        tiny_mask_rcnn(text=TINY.replace("predict_instance_masks: true", ""))
    no_conv = TINY.replace(
        "conv_hyperparams { op: CONV regularizer { l2_regularizer { weight: 0.0 } }\n"
        "    initializer { truncated_normal_initializer { stddev: 0.01 } } }",
        "",
    )
    with pytest.raises(UnsupportedError, match="conv_hyperparams"):
        tiny_mask_rcnn(text=no_conv)
    two = tiny_mask_rcnn(False, TINY.replace("number_of_stages: 3", "number_of_stages: 2"))
    assert two.mask_head is not None and not two.predicts_masks


@pytest.fixture(scope="module")
def trained():
    """3 synthetic 64x64 images (disc / triangle / cross), 350 steps at lr 4e-3 (~14 s CPU, one thread).
    Measured: min mask IoU 0.94 over the 3 images; 250 steps gave 0.75 (too close)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = tiny_mask_rcnn()
    images, gt = synthetic_masks(3)
    shapes = torch.tensor([[64, 64, 3]] * 3)
    opt = torch.optim.Adam(model.parameters(), lr=4e-3)
    x = model.preprocess(images)
    for _ in range(350):
        losses = model.loss(model.predict(x), gt, shapes)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        opt.step()
    torch.set_num_threads(threads)
    return model.eval(), images, gt


@pytest.mark.slow
def test_tiny_mask_rcnn_overfits_masks(trained):
    """Top detection: right class and mask IoU > 0.7 with the groundtruth after TF reframing."""
    model, images, gt = trained
    n = images.shape[0]
    with torch.no_grad():
        det = model(images, torch.tensor([[64, 64, 3]] * n))
    assert det["detection_masks"].shape == (n, 4, 16, 16)
    ious = []
    for i in range(n):
        box = det["detection_boxes"][i, :1].numpy()
        full = reframe_box_masks_to_image_masks(det["detection_masks"][i, :1].numpy(), box, 64, 64)
        ious.append(mask_iou(full[0] > 0.5, gt["masks"][i, 0].numpy()))
        assert int(det["detection_classes"][i, 0]) == int(gt["classes"][i, 0])
    assert min(ious) > 0.7, ious


@pytest.mark.slow
def test_mask_rcnn_onnx_torchscript_eager_agree(trained, tmp_path, shared_dir):
    """Export (fixed 64x64 resizer in the graph) -> detection_masks from ONNX / TorchScript equal eager
    (export verification compares matched detections' masks within 2e-3); Detector reframes them."""
    from odkit.export.compare import match_detections
    from odkit.export.exporter import export_model
    from odkit.export.resize import export_resizer
    from odkit.export.wrapper import ExportWrapper
    from odkit.inference.detector import Detector
    from odkit.inference.images import load_image
    from odkit.inputs.resizers import build_image_resizer

    model, images, gt = trained
    resizer = export_resizer(build_image_resizer(_proto().image_resizer))
    out = tmp_path / "export"
    info = export_model(model, resizer, out).info
    assert "detection_masks" in info["outputs"]
    wrapper = ExportWrapper(model, resizer, tuple(info["outputs"])).eval()
    paths = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    synthetic = images[0].permute(1, 2, 0).numpy()
    compared = 0
    for fmt in ("onnx", "torchscript"):
        det = Detector(out, fmt)
        for pixels in [synthetic] + [load_image(p) for p in paths]:
            with torch.no_grad():
                expected = {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(torch.from_numpy(pixels[None])))}
            actual = det.run_batch(pixels[None])
            assert actual["detection_masks"].shape == expected["detection_masks"].shape
            problems, n, _ = match_detections(expected, actual, min_score=0.05)
            assert not problems, problems
            compared += n
        found = det.to_detections(det.run_batch(synthetic[None]), min_score=0.5, image_hw=(64, 64))
        assert found and found[0].mask.shape == (64, 64)
        assert mask_iou(found[0].mask, gt["masks"][0, 0].numpy()) > 0.7
        assert found[0].to_dict()["mask"]["size"] == [64, 64]
    assert compared >= 2


@pytest.mark.slow
def test_odkit_predict_draws_masks_and_writes_rle(trained, tmp_path):
    """`odkit predict` on an export: JSON detections carry COCO RLE masks (decoding gives the Detector's
    mask), the drawn image has the mask blended in."""
    import json

    from PIL import Image

    from odkit.cli import main
    from odkit.export.exporter import export_model
    from odkit.export.resize import export_resizer
    from odkit.inputs.resizers import build_image_resizer

    mask_api = pytest.importorskip("pycocotools.mask")
    model, images, gt = trained
    out = tmp_path / "export"
    export_model(model, export_resizer(build_image_resizer(_proto().image_resizer)), out, formats=("onnx",))
    img_path = tmp_path / "in" / "disc.png"
    img_path.parent.mkdir()
    Image.fromarray(images[0].permute(1, 2, 0).numpy()).save(img_path)
    rc = main(["predict", "--model", str(out), "--images", str(img_path), "--output_dir", str(tmp_path / "p"),
               "--min_score", "0.5"])
    assert rc == 0
    records = json.loads((tmp_path / "p" / "detections.json").read_text())
    det = records[0]["detections"][0]
    rle = det["mask"]
    assert rle["size"] == [64, 64]
    decoded = mask_api.decode({"size": rle["size"], "counts": rle["counts"].encode()})
    assert mask_iou(decoded, gt["masks"][0, 0].numpy()) > 0.7
    drawn = np.asarray(Image.open(records[0]["output_image"]).convert("RGB"), np.int32)
    plain = images[0].permute(1, 2, 0).numpy().astype(np.int32)
    inside = decoded.astype(bool)
    # mask pixels are blended with the class colour; outside the mask and the box outline nothing changes
    assert np.abs(drawn[inside] - plain[inside]).mean() > 5
