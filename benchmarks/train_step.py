"""Training-step throughput and peak memory: odkit SSD vs torchvision equivalents.

Pairs (same input size, batch and random boxes):
  ssd_resnet50_fpn_640   odkit SSD ResNet50 v1 FPN 640 (reference pets config)
  retinanet_640          torchvision retinanet_resnet50_fpn (weights=None, weights_backbone=None), 640x640
  ssd_mnv2_fpnlite_320   odkit SSD MobileNet v2 FPN-lite 320 (TF2 zoo config)
  ssdlite320             torchvision ssdlite320_mobilenet_v3_large (weights=None, weights_backbone=None)
  centernet_r50fpn_512   odkit CenterNet ResNet50 v1 FPN 512 (the TF2 zoo centernet_resnet101_v1_fpn_512x512 config
                         with feature_extractor.type resnet_v1_50_fpn, written to a temporary file)
  mask_rcnn_irv2_1024    odkit Mask R-CNN Inception-ResNet-v2 1024 (the TF2 zoo config; masks fill the boxes), batch 1
  maskrcnn_1024          torchvision maskrcnn_resnet50_fpn (weights=None, weights_backbone=None), 1024x1024, batch 1
  keypointrcnn_512       torchvision keypointrcnn_resnet50_fpn (weights=None, weights_backbone=None; 17 random
                         keypoints per box), 512x512: the closest torchvision model to a CenterNet

and, for each odkit config, the TF OD API's own training step (`tfod:<case>`): `model_lib_v2.eager_train_step`
in a tf.function with the config's optimizer, run by ../shared/tools/tfod_reference/time_tfod_train_step.py in
the TF venv described in that folder's README (ODKIT_TFOD_VENV, default ~/tfod-venv; ODKIT_TFOD_SRC, default
~/tfod-src). TensorFlow is never imported by odkit: without that venv the column says so and is skipped.

Each case runs in its own subprocess so that peak memory is per model: peak RSS (ru_maxrss) on CPU,
torch.cuda.max_memory_allocated on CUDA. One step = forward + loss + backward + optimizer update (odkit and the TF
OD API: the config's optimizer, as their trainers build it; torchvision: momentum SGD). Default batch per
pair: 8 for the MobileNet pair, 2 for the ResNet50 pair (the issue's reference settings); --batch overrides.

    .venv/bin/python benchmarks/train_step.py --steps 3 [--threads 2] [--device cuda] [--cases a,b] [--no-tfod]
        [--variants fp32,fp32+compile,bf16] [--repeats 3]

Processes differ by up to ~10% on the same machine (within a process steps agree to ~3%): use --repeats 3 (runs
alternated across cases, medians reported) for figures worth quoting.
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
    "mask_rcnn_irv2_1024": SHARED / "compat/tfod_configs/mask_rcnn_inception_resnet_v2_1024x1024_coco17_gpu-8.config",
}
PAIRS = [("ssd_resnet50_fpn_640", "retinanet_640"), ("ssd_mnv2_fpnlite_320", "ssdlite320"),
         ("centernet_r50fpn_512", "keypointrcnn_512"), ("mask_rcnn_irv2_1024", "maskrcnn_1024")]
SIZES = {"ssd_resnet50_fpn_640": 640, "retinanet_640": 640, "ssd_mnv2_fpnlite_320": 320, "ssdlite320": 320,
         "centernet_r50fpn_512": 512, "keypointrcnn_512": 512, "mask_rcnn_irv2_1024": 1024, "maskrcnn_1024": 1024}
NUM_CLASSES = {"ssd_resnet50_fpn_640": 37, "retinanet_640": 37, "ssd_mnv2_fpnlite_320": 90, "ssdlite320": 90,
               "centernet_r50fpn_512": 90, "keypointrcnn_512": 90, "mask_rcnn_irv2_1024": 90, "maskrcnn_1024": 90}
DEFAULT_BATCH = {"ssd_resnet50_fpn_640": 2, "retinanet_640": 2, "ssd_mnv2_fpnlite_320": 8, "ssdlite320": 8,
                 "centernet_r50fpn_512": 2, "keypointrcnn_512": 2, "mask_rcnn_irv2_1024": 1, "maskrcnn_1024": 1}
# configs derived from a shared zoo config by text substitution (written next to the run, see _config_path)
DERIVED = {"centernet_r50fpn_512": (SHARED / "compat/tfod_configs/centernet_resnet101_v1_fpn_512x512_coco17_tpu-8.config",
                                    'type: "resnet_v2_101"', 'type: "resnet_v1_50_fpn"')}
TFOD_TOOL = SHARED / "tools/tfod_reference/time_tfod_train_step.py"


def _config_path(case: str) -> Path:
    """CONFIGS[case], or the DERIVED config written to a temporary folder (same text for odkit and TF)."""
    if case in CONFIGS:
        return CONFIGS[case]
    import tempfile

    source, old, new = DERIVED[case]
    text = source.read_text()
    if old not in text:
        raise SystemExit(f"{source}: expected {old!r} to derive {case}")
    path = Path(tempfile.gettempdir()) / f"odkit_bench_{case}.config"
    path.write_text(text.replace(old, new))
    return path


def run_tfod(case: str, batch: int, steps: int, warmup: int, threads: int) -> dict | str:
    """The TF OD API's own training step on CONFIGS[case] (a subprocess in the TF venv) or why it was skipped."""
    venv = Path(os.environ.get("ODKIT_TFOD_VENV", Path.home() / "tfod-venv"))
    src = Path(os.environ.get("ODKIT_TFOD_SRC", Path.home() / "tfod-src"))
    py = venv / "bin/python"
    if not py.exists() or not (src / "research/object_detection").is_dir() or not TFOD_TOOL.exists():
        return (f"skipped: TF OD API venv not found (want {py}, {src}/research/object_detection and {TFOD_TOOL};"
                " see ../shared/tools/tfod_reference/README.md)")
    n = str(threads or os.cpu_count() or 1)
    env = {**os.environ, "PYTHONPATH": f"{src / 'research'}:{src}", "TF_USE_LEGACY_KERAS": "1",
           "OMP_NUM_THREADS": n, "TF_NUM_INTRAOP_THREADS": n, "TF_NUM_INTEROP_THREADS": n,
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    # a small wrapper process reports the TF process's own peak RSS (RUSAGE_CHILDREN of a fresh parent)
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)")
    cmd = [sys.executable, "-c", wrapper, str(py), str(TFOD_TOOL), str(_config_path(case)), str(batch),
           "--warmup", str(max(1, warmup)), "--steps", str(steps)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    peak = next((x for x in out.stdout.splitlines() if x.startswith("PEAK_KIB")), "PEAK_KIB nan")
    if out.returncode != 0 or line is None:
        return f"failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}"
    s_per_step = float(line.split("median ")[1].split(" s/step")[0])
    peak_mb = float(peak.split()[1]) / 1024
    return {"case": f"tfod:{case}", "device": "cpu", "batch": batch, "steps": steps, "size": SIZES[case],
            "params_m": float("nan"), "img_per_s": batch / s_per_step, "s_per_step": s_per_step, "peak_mb": peak_mb}


def _random_boxes(torch, batch: int, n: int, gen):
    yx = torch.rand(batch, n, 2, generator=gen) * 0.6
    hw = torch.rand(batch, n, 2, generator=gen) * 0.3 + 0.1
    return torch.cat([yx, yx + hw], dim=-1)  # normalized ymin, xmin, ymax, xmax


def _box_masks(torch, boxes, size: int):
    """uint8 [..., size, size] masks filling normalized yxyx boxes [..., 4]."""
    grid = (torch.arange(size) + 0.5) / size
    y = (grid[:, None] >= boxes[..., 0, None, None]) & (grid[:, None] < boxes[..., 2, None, None])
    x = (grid[None, :] >= boxes[..., 1, None, None]) & (grid[None, :] < boxes[..., 3, None, None])
    return (y & x).to(torch.uint8)


def _autocast(torch, device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)


def _odkit_step_fn(case: str, device, batch: int, torch, precision: str = "fp32", compile: bool = False):
    from google.protobuf import text_format

    from odkit.builders.model_builder import build_model
    from odkit.protos import pipeline_pb2
    from odkit.training.optimizers import build_optimizer

    cfg = text_format.Parse(_config_path(case).read_text(), pipeline_pb2.TrainEvalPipelineConfig())
    model = build_model(cfg.model, True).to(device)
    model = model.to(memory_format=torch.channels_last)  # as odkit's trainer does on CPU and GPU
    size = SIZES[case]
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=gen).to(device)
    n = 4
    gt = {"boxes": _random_boxes(torch, batch, n, gen).to(device),
          "classes": torch.randint(1, NUM_CLASSES[case] + 1, (batch, n), generator=gen).to(device),
          "weights": torch.ones(batch, n, device=device), "num_boxes": torch.full((batch,), n, device=device)}
    if getattr(model, "predicts_masks", False):  # Mask R-CNN: each object's mask fills its box
        gt["masks"] = _box_masks(torch, gt["boxes"].cpu(), size).to(device)
    shapes = torch.tensor([[size, size, 3]] * batch, device=device)
    # the config's optimizer, as `odkit train` builds it
    opt, _ = build_optimizer(cfg.train_config.optimizer, [p for p in model.parameters() if p.requires_grad])
    predict = model.predict
    if compile and device.type == "cpu":  # as `odkit train --compile` on the CPU: the focal-loss kernels only
        from odkit.core.losses import compile_focal_kernels

        why_not = compile_focal_kernels()
        if why_not:
            print(f"{case}: {why_not}", file=sys.stderr)
    elif compile:
        predict = torch.compile(model.predict)

    def step():
        with _autocast(torch, device, precision):
            pd = predict(model.preprocess(images))
        pd = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in pd.items()}
        losses = model.loss(pd, gt, shapes)
        total = sum(losses.values()) + model.regularization_loss()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total.detach()

    return model, step


def _torchvision_step_fn(case: str, device, batch: int, torch, precision: str = "fp32", compile: bool = False):
    import torchvision

    size = SIZES[case]
    if case == "retinanet_640":
        model = torchvision.models.detection.retinanet_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES[case] + 1, min_size=size, max_size=size)
    elif case == "keypointrcnn_512":
        model = torchvision.models.detection.keypointrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=NUM_CLASSES[case] + 1, min_size=size, max_size=size)
    elif case == "maskrcnn_1024":
        model = torchvision.models.detection.maskrcnn_resnet50_fpn(
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
    if case == "keypointrcnn_512":  # 17 visible keypoints inside each box
        for t in targets:
            b = t["boxes"].cpu()
            u = torch.rand(4, 17, 2, generator=gen)
            xy = b[:, None, :2] + u * (b[:, None, 2:] - b[:, None, :2])
            t["keypoints"] = torch.cat([xy, torch.ones(4, 17, 1)], dim=-1).to(device)
    if case == "maskrcnn_1024":  # each object's mask fills its box
        for t in targets:
            t["masks"] = _box_masks(torch, t["boxes"].cpu()[:, [1, 0, 3, 2]] / size, size).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    if compile:  # torchvision's detection models are not compile-friendly end to end: compile the backbone+FPN
        model.backbone = torch.compile(model.backbone)

    def step():
        with _autocast(torch, device, precision):
            losses = model(images, targets)
        total = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        return total.detach()

    return model, step


def run_case(case: str, device_name: str, batch: int, steps: int, warmup: int, threads: int,
             precision: str = "fp32", compile: bool = False) -> dict:
    import torch

    from odkit.runtime import available_cores, keep_freed_memory

    torch.set_num_threads(threads or available_cores())  # the same for odkit and its peers
    keep_freed_memory()  # as odkit's trainer does; for the torchvision peers too (they gain as much)
    device = torch.device(device_name)
    torch.manual_seed(0)
    make = _odkit_step_fn if case in CONFIGS or case in DERIVED else _torchvision_step_fn
    model, step = make(case, device, batch, torch, precision, compile)
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
            "precision": precision, "compile": compile,
            "params_m": params / 1e6, "img_per_s": batch * steps / dt, "s_per_step": dt / steps, "peak_mb": peak_mb}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=0, help="0 = per-pair default (8 MobileNet, 2 ResNet50)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = the cores available to this process, odkit.runtime)")
    p.add_argument("--cases", default=",".join(c for pair in PAIRS for c in pair))
    p.add_argument("--no-tfod", action="store_true", help="skip the TF OD API column")
    p.add_argument("--precision", choices=["fp32", "bf16", "fp16"], default="fp32", help="autocast dtype")
    p.add_argument("--compile", action="store_true", help="as odkit train --compile: the model's forward on a GPU, the focal-loss kernels on the CPU")
    p.add_argument("--variants", default="", help="odkit variants in one run, e.g. fp32,fp32+compile,bf16 "
                   "(torchvision peers run in each precision listed; overrides --precision/--compile)")
    p.add_argument("--repeats", type=int, default=1, help="runs per case (alternated); the median is reported")
    p.add_argument("--json", help="also write all results (medians) to this JSON file")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child mode: run one case, print JSON
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_case(args.one, args.device, args.batch, args.steps, args.warmup, args.threads,
                                  args.precision, args.compile)))
        return 0
    runs: dict[str, list[dict]] = {}

    def show(r: dict, label: str) -> None:
        runs.setdefault(label, []).append(r)
        print(f"{label:34s} {r['size']:4d}px batch {r['batch']}  {r['params_m']:6.2f}M params  "
              f"{r['img_per_s']:7.3f} img/s  {r['s_per_step']:7.3f} s/step  peak {r['peak_mb']:8.1f} MB", flush=True)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else \
        [args.precision + ("+compile" if args.compile else "")]
    cases = args.cases.split(",")
    for _ in range(args.repeats):  # cases alternate, so a slow minute of the machine hits all of them
        for case in cases:
            batch = args.batch or DEFAULT_BATCH[case]
            is_odkit = case in CONFIGS or case in DERIVED
            # torchvision peers: each precision the odkit variants use, not compiled on the CPU
            todo = variants if is_odkit or args.device != "cpu" else \
                list(dict.fromkeys(v.split("+")[0] for v in variants))
            for variant in todo:
                precision, _, extra = variant.partition("+")
                compile_it = extra == "compile" and (is_odkit or args.device != "cpu")
                cmd = [sys.executable, __file__, "--one", case, "--device", args.device, "--batch", str(batch),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads", str(args.threads),
                       "--precision", precision] + (["--compile"] if compile_it else [])
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"{case} [{variant}]: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                    continue
                # without --variants the rows keep the plain case names (benchmarks/gpu.sh reads them)
                suffix = f" [{precision}{'+compile' if compile_it else ''}]"
                label = case if variant == "fp32" or not args.variants else case + suffix
                show(json.loads(out.stdout.strip().splitlines()[-1]), label)
            if is_odkit and not args.no_tfod and args.device == "cpu":
                r = run_tfod(case, batch, args.steps, args.warmup, args.threads)
                if isinstance(r, str):
                    print(f"{'tfod:' + case:34s} {r}", flush=True)
                else:
                    show(r, f"tfod:{case}")
    results = {label: sorted(rs, key=lambda r: r["img_per_s"])[len(rs) // 2] for label, rs in runs.items()}
    if args.repeats > 1:
        print(f"\nmedian of {args.repeats} runs (img/s of each run in brackets):")
        for label, r in results.items():
            spread = ", ".join(f"{x['img_per_s']:.3f}" for x in runs[label])
            print(f"{label:34s} {r['img_per_s']:7.3f} img/s  peak {r['peak_mb']:8.1f} MB  [{spread}]")
    print()
    for a, b in PAIRS:
        rt = results.get(f"tfod:{a}")
        for label in [k for k in results if k == a or k.startswith(a + " [")]:
            ra = results[label]
            prec = label.partition("[")[2].rstrip("]").split("+")[0] or "fp32"
            rb = results.get(b if prec == "fp32" else f"{b} [{prec}]")
            parts = []
            if rt is not None:
                parts.append(f"vs TF OD API (fp32): throughput x{ra['img_per_s'] / rt['img_per_s']:.2f}, "
                             f"peak memory x{ra['peak_mb'] / rt['peak_mb']:.2f}")
            if rb is not None:
                parts.append(f"vs {b} ({prec}): throughput x{ra['img_per_s'] / rb['img_per_s']:.2f}, "
                             f"peak memory x{ra['peak_mb'] / rb['peak_mb']:.2f}")
            if parts:
                print(f"{label}: " + "; ".join(parts))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
