"""A tiny SSD (MobileNet, 128x128) overfits 8 synthetic images and detects their boxes."""

from __future__ import annotations

import math
import os

import pytest
import torch
from google.protobuf import text_format

from odkit.builders.model_builder import build_model
from odkit.core.box_ops import pairwise_iou
from odkit.protos import model_pb2

TINY_SSD = """
ssd {
  num_classes: 3
  image_resizer { fixed_shape_resizer { height: 128 width: 128 } }
  feature_extractor {
    type: "%(extractor)s"
    depth_multiplier: %(dm)s
    min_depth: 8
    use_depthwise: true
    fpn { min_level: 3 max_level: 5 additional_layer_depth: 32 }
    conv_hyperparams {
      activation: RELU_6
      regularizer { l2_regularizer { weight: 0.00004 } }
      initializer { random_normal_initializer { stddev: 0.03 } }
      batch_norm { scale: true decay: 0.9 epsilon: 0.001 }
    }
    override_base_feature_extractor_hyperparams: true
  }
  box_coder { faster_rcnn_box_coder { y_scale: 10.0 x_scale: 10.0 height_scale: 5.0 width_scale: 5.0 } }
  matcher { argmax_matcher { matched_threshold: 0.5 unmatched_threshold: 0.4 force_match_for_each_row: true } }
  similarity_calculator { iou_similarity {} }
  anchor_generator {
    multiscale_anchor_generator { min_level: 3 max_level: 5 anchor_scale: 4.0 aspect_ratios: [1.0, 2.0, 0.5]
                                  scales_per_octave: 2 }
  }
  box_predictor {
    weight_shared_convolutional_box_predictor {
      depth: 32
      num_layers_before_predictor: 1
      kernel_size: 3
      class_prediction_bias_init: -4.6
      share_prediction_tower: true
      use_depthwise: true
      conv_hyperparams {
        activation: RELU_6
        regularizer { l2_regularizer { weight: 0.00004 } }
        initializer { random_normal_initializer { stddev: 0.01 } }
        batch_norm { scale: true decay: 0.9 epsilon: 0.001 }
      }
    }
  }
  post_processing {
    batch_non_max_suppression { score_threshold: 0.3 iou_threshold: 0.5 max_detections_per_class: 10
                                max_total_detections: 10 }
    score_converter: SIGMOID
  }
  normalize_loss_by_num_matches: true
  normalize_loc_loss_by_codesize: true
  loss {
    localization_loss { weighted_smooth_l1 {} }
    classification_loss { weighted_sigmoid {} }
  }
  encode_background_as_zeros: true
}
"""

COLORS = {1: (230, 40, 40), 2: (40, 220, 40), 3: (40, 40, 230)}


def synthetic_batch(n: int = 8, size: int = 128, seed: int = 0):
    """n gray images with 1-2 coloured rectangles each; class = colour."""
    g = torch.Generator().manual_seed(seed)
    images = torch.full((n, 3, size, size), 90, dtype=torch.uint8)
    boxes = torch.zeros(n, 2, 4)
    classes = torch.zeros(n, 2, dtype=torch.int64)
    num = torch.zeros(n, dtype=torch.int64)
    for i in range(n):
        k = 1 + i % 2
        for j in range(k):
            h, w = (int(v) for v in torch.randint(28, 56, (2,), generator=g))
            y0 = int(torch.randint(0, size // 2 - h // 2, (1,), generator=g)) + j * (size // 2)
            y0 = min(y0, size - h)
            x0 = int(torch.randint(0, size - w, (1,), generator=g))
            c = 1 + (i + j) % 3
            images[i, :, y0:y0 + h, x0:x0 + w] = torch.tensor(COLORS[c], dtype=torch.uint8).view(3, 1, 1)
            boxes[i, j] = torch.tensor([y0, x0, y0 + h, x0 + w], dtype=torch.float32) / size
            classes[i, j] = c
        num[i] = k
    groundtruth = {"boxes": boxes, "classes": classes, "weights": (classes > 0).float(), "num_boxes": num}
    return images, groundtruth


def build_tiny(extractor: str = "ssd_mobilenet_v1_fpn_keras", dm: float = 0.25, is_training: bool = True):
    proto = text_format.Parse(TINY_SSD % {"extractor": extractor, "dm": dm}, model_pb2.DetectionModel())
    return build_model(proto, is_training)


def _lr(step: int, steps: int, base: float, warmup: int = 10) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


@pytest.mark.slow
def test_tiny_ssd_overfits_and_detects(one_thread):
    """Bars measured over seeds 0-2 x CPU kernels (oneDNN/ATen AVX-512, AVX2 and SSE4.1/default, emulated with
    ONEDNN_MAX_CPU_ISA + ATEN_CPU_CAPABILITY), 300 steps: localization loss ratio 0.042-0.092, classification
    ratio 0.0033-0.0133, boxes found 11-12 of 12. The old recipe (constant lr 1e-2, 120 steps, 2 threads) ended
    anywhere between 0.08x and 0.35x (it failed on AVX2). Training on wrong classes or on another image's boxes
    finds 1 of 12."""
    seed = int(os.environ.get("ODKIT_TEST_SEED", "0"))
    torch.manual_seed(seed)
    extractor = os.environ.get("ODKIT_TEST_EXTRACTOR", "ssd_mobilenet_v1_fpn_keras")
    steps = int(os.environ.get("ODKIT_TEST_STEPS", "300"))
    base_lr = float(os.environ.get("ODKIT_TEST_LR", "1e-2"))
    model = build_tiny(extractor, float(os.environ.get("ODKIT_TEST_DM", "0.25")))
    images, gt = synthetic_batch()
    shapes = torch.tensor([[128, 128, 3]] * images.shape[0])
    opt = torch.optim.Adam(model.parameters(), lr=base_lr)
    model.train()
    first = None
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, base_lr)  # cosine to 0: the end point is not a noisy Adam step
        losses = model.loss(model.predict(model.preprocess(images)), gt, shapes)
        total = losses["Loss/localization_loss"] + losses["Loss/classification_loss"]
        if first is None:
            first = {k: float(v.detach()) for k, v in losses.items()}
        opt.zero_grad()
        (total + model.regularization_loss()).backward()
        opt.step()
        if os.environ.get("ODKIT_TEST_VERBOSE") and step % 20 == 0:
            print(step, {k: round(float(v.detach()), 4) for k, v in losses.items()})
    last = {k: float(v.detach()) for k, v in losses.items()}
    print("first", first, "last", last)
    assert last["Loss/classification_loss"] < 0.05 * first["Loss/classification_loss"]
    assert last["Loss/localization_loss"] < 0.2 * first["Loss/localization_loss"]

    model.eval()
    with torch.no_grad():
        det = model(images, shapes)
    hits = 0
    total_boxes = 0
    for i in range(images.shape[0]):
        n = int(gt["num_boxes"][i])
        nd = int(det["num_detections"][i])
        if nd == 0:  # counted as misses
            total_boxes += n
            continue
        iou = pairwise_iou(gt["boxes"][i, :n], det["detection_boxes"][i, :nd])  # [n, nd]
        for j in range(n):
            total_boxes += 1
            best = int(iou[j].argmax())
            if iou[j, best] > 0.5 and int(det["detection_classes"][i, best]) == int(gt["classes"][i, j]):
                hits += 1
    assert hits >= total_boxes - 2, f"only {hits}/{total_boxes} boxes detected with IoU > 0.5 and the right class"
