"""Faster R-CNN train-step benchmark (the Faster R-CNN section of benchmarks/train_step.py; kept in its own module).

    .venv/bin/python benchmarks/train_step_faster_rcnn.py --device cuda --batch 8 --size 640 --steps 50

Builds odkit's Faster R-CNN ResNet-50 (TF `faster_rcnn_resnet50_v1_640x640` settings, random init) and, for
reference, torchvision's `fasterrcnn_resnet50_fpn` (a different neck: FPN), then times full training steps
(forward, loss, backward, SGD step) on the same synthetic batch (one or two boxes per image). Prints one JSON
line per model: images/s (median over steps after warm-up) and peak GPU memory. `run_faster_rcnn(args)`
returns the same dicts for benchmarks/train_step.py.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

CONFIG = """
num_classes: 37
image_resizer { fixed_shape_resizer { height: %(size)d width: %(size)d } }
feature_extractor { type: 'faster_rcnn_resnet50_keras' batch_norm_trainable: true }
first_stage_anchor_generator { grid_anchor_generator {
  scales: [0.25, 0.5, 1.0, 2.0] aspect_ratios: [0.5, 1.0, 2.0] height_stride: 16 width_stride: 16 } }
first_stage_box_predictor_conv_hyperparams { op: CONV regularizer { l2_regularizer { weight: 0.0 } }
  initializer { truncated_normal_initializer { stddev: 0.01 } } }
first_stage_nms_score_threshold: 0.0
first_stage_nms_iou_threshold: 0.7
first_stage_max_proposals: 300
first_stage_localization_loss_weight: 2.0
first_stage_objectness_loss_weight: 1.0
initial_crop_size: 14
maxpool_kernel_size: 2
maxpool_stride: 2
second_stage_box_predictor { mask_rcnn_box_predictor { use_dropout: false dropout_keep_probability: 1.0
  fc_hyperparams { op: FC regularizer { l2_regularizer { weight: 0.0 } }
    initializer { variance_scaling_initializer { factor: 1.0 uniform: true mode: FAN_AVG } } }
  share_box_across_classes: true } }
second_stage_post_processing { batch_non_max_suppression { score_threshold: 0.0 iou_threshold: 0.6
  max_detections_per_class: 100 max_total_detections: 300 } score_converter: SOFTMAX }
second_stage_localization_loss_weight: 2.0
second_stage_classification_loss_weight: 1.0
clip_anchors_to_image: true
"""


def _batch(batch: int, size: int, device):
    import torch

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    boxes = torch.zeros(batch, 2, 4)
    boxes[:, 0] = torch.tensor([0.1, 0.1, 0.5, 0.6])
    boxes[:, 1] = torch.tensor([0.4, 0.3, 0.9, 0.8])
    classes = torch.tensor([[3, 7]]).repeat(batch, 1)
    gt = {
        "boxes": boxes,
        "classes": classes,
        "weights": torch.ones(batch, 2),
        "num_boxes": torch.full((batch,), 2, dtype=torch.int64),
    }
    return images.to(device), {k: v.to(device) for k, v in gt.items()}


def _timed_steps(step, steps: int, warmup: int, device) -> list[float]:
    import torch

    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def run_faster_rcnn(args: argparse.Namespace) -> list[dict]:
    import torch
    from google.protobuf import text_format

    from odkit.builders.faster_rcnn_builder import build_faster_rcnn
    from odkit.protos import faster_rcnn_pb2

    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    images, gt = _batch(args.batch, args.size, device)
    shapes = torch.tensor([[args.size, args.size, 3]] * args.batch, device=device)
    results = []

    proto = text_format.Parse(CONFIG % {"size": args.size}, faster_rcnn_pb2.FasterRcnn())
    model = build_faster_rcnn(proto, True).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def odkit_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = model.loss(model.predict(model.preprocess(images)), gt, shapes)
        opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        opt.step()

    results.append(_measure("odkit faster_rcnn_resnet50 (C4)", odkit_step, args, device))

    import torchvision.models.detection as tvd

    tv = (
        tvd.fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=38, min_size=args.size, max_size=args.size
        )
        .to(device)
        .train()
    )
    tv_opt = torch.optim.SGD(tv.parameters(), lr=1e-3, momentum=0.9)
    tv_images = list(images.float() / 255.0)
    targets = [
        {"boxes": gt["boxes"][i][:, [1, 0, 3, 2]] * args.size, "labels": gt["classes"][i]}
        for i in range(args.batch)
    ]

    def tv_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            losses = tv(tv_images, targets)
        tv_opt.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        tv_opt.step()

    results.append(_measure("torchvision fasterrcnn_resnet50_fpn", tv_step, args, device))
    return results


def _measure(name: str, step, args: argparse.Namespace, device) -> dict:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = _timed_steps(step, args.steps, args.warmup, device)
    out = {
        "model": name,
        "device": str(device),
        "batch": args.batch,
        "size": args.size,
        "precision": args.precision,
        "images_per_s": round(args.batch / statistics.median(times), 2),
    }
    if device.type == "cuda":
        out["peak_gpu_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    for r in run_faster_rcnn(p.parse_args()):
        print(json.dumps(r))


if __name__ == "__main__":
    main()
