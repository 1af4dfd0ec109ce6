"""Training-step throughput and peak memory: odkit SSD vs torchvision equivalents.

Pairs (same input size, batch and random boxes):
  ssd_resnet50_fpn_640   odkit SSD ResNet50 v1 FPN 640 (reference pets config)
  retinanet_640          torchvision retinanet_resnet50_fpn (weights=None, weights_backbone=None), 640x640
  ssd_mnv2_fpnlite_320   odkit SSD MobileNet v2 FPN-lite 320 (TF2 zoo config)
  ssdlite320             torchvision ssdlite320_mobilenet_v3_large (weights=None, weights_backbone=None)

Each case runs in its own subprocess so that peak memory is per model: peak RSS (ru_maxrss) on CPU,
torch.cuda.max_memory_allocated on CUDA. One step = forward + loss + backward + SGD update.

    .venv/bin/python benchmarks/train_step.py --batch 2 --steps 3 [--device cuda] [--cases a,b]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))
CONFIGS = {
    "ssd_resnet50_fpn_640": SHARED / "compat/tfod_configs/pets_ssd_resnet50_v1_fpn_640x640.config",
    "ssd_mnv2_fpnlite_320": SHARED / "compat/tfod_configs/ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
}
PAIRS = [("ssd_resnet50_fpn_640", "retinanet_640"), ("ssd_mnv2_fpnlite_320", "ssdlite320")]
SIZES = {"ssd_resnet50_fpn_640": 640, "retinanet_640": 640, "ssd_mnv2_fpnlite_320": 320, "ssdlite320": 320}
NUM_CLASSES = {"ssd_resnet50_fpn_640": 37, "retinanet_640": 37, "ssd_mnv2_fpnlite_320": 90, "ssdlite320": 90}


def _random_boxes(torch, batch: int, n: int, gen):
    yx = torch.rand(batch, n, 2, generator=gen) * 0.6
    hw = torch.rand(batch, n, 2, generator=gen) * 0.3 + 0.1
    return torch.cat([yx, yx + hw], dim=-1)  # normalized ymin, xmin, ymax, xmax


def _odkit_step_fn(case: str, device, batch: int, torch):
    from google.protobuf import text_format

    from odkit.builders.model_builder import build_model
    from odkit.protos import pipeline_pb2

    cfg = text_format.Parse(CONFIGS[case].read_text(), pipeline_pb2.TrainEvalPipelineConfig())
    model = build_model(cfg.model, True).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    size = SIZES[case]
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen).to(device)
    n = 4
    gt = {"boxes": _random_boxes(torch, batch, n, gen).to(device),
          "classes": torch.randint(1, NUM_CLASSES[case] + 1, (batch, n), generator=gen).to(device),
          "weights": torch.ones(batch, n, device=device), "num_boxes": torch.full((batch,), n, device=device)}
    shapes = torch.tensor([[size, size, 3]] * batch, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        pd = model.predict(model.preprocess(images))
        losses = model.loss(pd, gt, shapes)
        total = sum(losses.values()) + model.regularization_loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total

    return model, step


def _torchvision_step_fn(case: str, device, batch: int, torch):
    import torchvision

    size = SIZES[case]
    if case == "retinanet_640":
        model = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES[case] + 1, min_size=size, max_size=size)
    else:
        model = torchvision.models.detection.ssdlite320_mobilenet_v3_large(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES[case] + 1)
    model = model.to(device).train()
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=gen).to(device) for _ in range(batch)]
    boxes = _random_boxes(torch, batch, 4, gen)[..., [1, 0, 3, 2]] * size  # xyxy pixels
    targets = [{"boxes": boxes[i].to(device),
                "labels": torch.randint(1, NUM_CLASSES[case] + 1, (4,), generator=gen).to(device)}
               for i in range(batch)]
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        losses = model(images, targets)
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total

    return model, step


def run_case(case: str, device_name: str, batch: int, steps: int, warmup: int, threads: int) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device_name)
    torch.manual_seed(0)
    make = _odkit_step_fn if case.startswith("ssd_") else _torchvision_step_fn
    model, step = make(case, device, batch, torch)
    params = sum(p.numel() for p in model.parameters())
    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    if device.type == "cuda":
        peak_mb = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    return {"case": case, "device": device_name, "batch": batch, "steps": steps, "size": SIZES[case],
            "params_m": params / 1e6, "img_per_s": batch * steps / dt, "s_per_step": dt / steps, "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = torch default)")
    p.add_argument("--cases", default=",".join(c for pair in PAIRS for c in pair))
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: run one case, print JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one, args.device, args.batch, args.steps, args.warmup, args.threads)))
        return 0
    results: dict[str, dict] = {}
    for case in args.cases.split(","):
        cmd = [sys.executable, __file__, "--one", case, "--device", args.device, "--batch", str(args.batch),
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{case}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        results[case] = r
        print(f"{case:24s} {r['size']:4d}px batch {r['batch']}  {r['params_m']:6.2f}M params  "
              f"{r['img_per_s']:7.3f} img/s  {r['s_per_step']:7.3f} s/step  peak {r['peak_mb']:8.1f} MB", flush=True)
    for a, b in PAIRS:
        if a in results and b in results:
            ra, rb = results[a], results[b]
            print(f"{a} / {b}: throughput x{ra['img_per_s'] / rb['img_per_s']:.2f}, "
                  f"peak memory x{ra['peak_mb'] / rb['peak_mb']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
