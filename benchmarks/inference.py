"""CPU inference speed at batch 1: odkit eager, ONNX (onnxruntime) and TorchScript vs torchvision's peer.

    PYTHONPATH=src .venv/bin/python benchmarks/inference.py            # configs/ + reference pets + Faster R-CNN
    PYTHONPATH=src .venv/bin/python benchmarks/inference.py --quick    # 2 threads, fewer runs
    PYTHONPATH=src .venv/bin/python benchmarks/inference.py --zoo      # also the TF2 zoo configs odkit supports
    PYTHONPATH=src .venv/bin/python benchmarks/inference.py --config a.config --config b.config

For each config the model is built with random weights, re-drawn so that the scores spread over (0, 1)
(an untrained SSD scores every anchor the same, so NMS would have nothing to do): convolutions get He
init, and the final class / box layers are drawn on the statistics of their inputs (class logits about
N(-2, 1.5), box deltas about N(0, 0.1)). The torchvision peer of the same kind (ssdlite320_mobilenet_v3_large
for MobileNet SSDs, retinanet_resnet50_fpn for ResNet / EfficientDet SSDs, fasterrcnn_resnet50_fpn for
Faster R-CNN; same input size and number of classes) gets the same treatment, so its NMS works too.
The model is exported (ONNX + TorchScript, not verified here: tests/test_export*.py do that) and each
runtime is timed on the same decoded image, resize, normalisation, network and NMS included. Reports
the median ms per image for 1 and 2 intra-op threads and the ratios (peer ms / odkit ms: > 1 is faster).
Configs whose model is identical to one already measured are not measured twice.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))
REFERENCE = "pets_ssd_resnet50_v1_fpn_640x640.config"
FASTER_RCNN = "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
ZOO = (
    "ssd_mobilenet_v2_320x320_coco17_tpu-8.config",
    "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config",
    "ssd_mobilenet_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
    "ssd_efficientdet_d0_512x512_coco17_tpu-8.config",
    "faster_rcnn_resnet50_v1_fpn_640x640_coco17_tpu-8.config",
)
CLASS_LAYER = re.compile(r"(class_head(\.\d+)?|class_fc\.linear|rpn_head\.objectness\.0|cls_logits|cls_score"
                         r"|classification_head\.module_list\.\d+\.1)$")
BOX_LAYER = re.compile(r"(box_head(\.\d+)?|box_fc\.linear|rpn_head\.box\.0|bbox_reg|bbox_pred"
                       r"|regression_head\.module_list\.\d+\.1)$")


def _time(fns: dict[str, Callable[[], object]], warmup: int, runs: int, rounds: int = 2) -> dict[str, float]:
    """Median ms of each function. Each takes the machine alone for a block of runs (torch's OpenMP threads keep
    spinning for a while after a torch call and took the cores from onnxruntime's pool when the functions
    alternated call by call: FPN-lite ONNX at 2 threads read 23 ms instead of 15), and the blocks alternate
    `rounds` times so that load changes hit all of them alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    per_round = max(1, -(-runs // rounds))
    for _ in range(rounds):
        for k, fn in fns.items():
            for i in range(warmup + per_round):
                t0 = time.perf_counter()
                fn()
                if i >= warmup:
                    times[k].append((time.perf_counter() - t0) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def _compat_dir() -> Path | None:
    d = SHARED / "compat/tfod_configs"
    return d if d.is_dir() else None


def spread_scores(model, run: Callable[[], object], he_init: bool) -> None:
    """Re-draw weights so that scores spread: He init for convs (SSDs; optional), then the final class /
    box layers on the statistics of their inputs (class logits ~N(-2, 1.5), box deltas ~N(0, 0.1))."""
    import torch

    torch.manual_seed(1)
    if he_init:
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
    layers = {}
    for name, layer in model.named_modules():
        if not isinstance(layer, (torch.nn.Conv2d, torch.nn.Linear)) or layer.bias is None:
            continue
        if isinstance(layer, torch.nn.Conv2d) and layer.groups > 1:
            continue
        if CLASS_LAYER.search(name):
            layers[name] = (layer, 1.5, -2.0)
        elif BOX_LAYER.search(name):
            layers[name] = (layer, 0.1, 0.0)
    if not layers:
        raise RuntimeError(f"no class/box layers found in {type(model).__name__}")
    inputs: dict[str, list] = {}
    hooks = []
    for key, (layer, *_) in layers.items():
        def hook(_m, inp, _out, key=key):
            x = inp[0].detach()
            x = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.dim() == 4 else x.reshape(-1, x.shape[-1])
            inputs.setdefault(key, []).append(x[torch.randperm(x.shape[0])[:4096]])
        hooks.append(layer.register_forward_hook(hook))
    with torch.no_grad():
        run()
    for h in hooks:
        h.remove()
    with torch.no_grad():
        for key, (layer, scale, shift) in layers.items():
            if key not in inputs:
                continue
            feats = torch.cat(inputs[key])
            mean = feats.mean(0)
            spread = float((feats - mean).norm(dim=1).mean()) + 1e-6
            taps = layer.weight[0, 0].numel() if isinstance(layer, torch.nn.Conv2d) else 1  # kernel positions
            layer.weight.normal_(std=scale / (spread * taps**0.5))
            per_channel = layer.weight.reshape(layer.weight.shape[0], mean.shape[0], -1).sum(-1)
            layer.bias.copy_(shift - per_channel @ mean)


def torchvision_peer(arch: str, feature_extractor: str, num_classes: int, size: tuple[int, int]):
    import torchvision.models.detection as tvd

    kw = {"weights": None, "weights_backbone": None, "num_classes": num_classes + 1}
    if arch == "ssd" and "mobilenet" in feature_extractor:
        name = "ssdlite320_mobilenet_v3_large"
        model = tvd.ssdlite320_mobilenet_v3_large(**kw)
        model.transform.min_size = (min(size),)
        model.transform.max_size = max(size)
    elif arch == "ssd":
        name = "retinanet_resnet50_fpn"
        model = tvd.retinanet_resnet50_fpn(**kw, min_size=min(size), max_size=max(size))
    else:
        name = "fasterrcnn_resnet50_fpn"
        model = tvd.fasterrcnn_resnet50_fpn(**kw, min_size=min(size), max_size=max(size))
    return name, model.eval()


def measure(config_path: Path, pixels: np.ndarray, threads: list[int], warmup: int, runs: int) -> dict:
    import torch

    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.export.exporter import export_model
    from odkit.export.wrapper import ExportWrapper
    from odkit.inference.detector import Detector
    from odkit.inputs.resizers import build_image_resizer

    config = load(config_path)
    arch = config.model.WhichOneof("model")
    arch_cfg = getattr(config.model, arch)
    torch.manual_seed(0)
    model = build_model(config.model, is_training=False).eval()
    resizer = build_image_resizer(arch_cfg.image_resizer).eval()
    size = tuple(model.input_size or (640, 640))
    outputs = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")
    wrapper = ExportWrapper(model, resizer, outputs).eval()
    x = torch.from_numpy(np.array(pixels))[None]
    spread_scores(model, lambda: wrapper(x), he_init=arch == "ssd")
    tv_name, tv_model = torchvision_peer(arch, arch_cfg.feature_extractor.type, model.num_classes, size)
    tv_x = [x[0].permute(2, 0, 1).float() / 255.0]
    spread_scores(tv_model, lambda: tv_model(tv_x), he_init=arch == "ssd")
    with torch.inference_mode():
        num_eager = int(wrapper(x)[3][0])
        tv_dets = len(tv_model(tv_x)[0]["scores"])
    row: dict = {"config": config_path.name, "kind": f"{arch} {arch_cfg.feature_extractor.type} {size[0]}x{size[1]}",
                 "classes": model.num_classes, "peer": tv_name, "dets": (num_eager, tv_dets), "ms": {}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        export_model(model, resizer, Path(tmp) / "m", formats=["onnx", "torchscript"], verify=False)
        row["export_s"] = time.perf_counter() - t0
        batch = np.ascontiguousarray(pixels[None])
        for t in threads:
            torch.set_num_threads(t)
            onnx = Detector(Path(tmp) / "m", "onnx", num_threads=t).run_batch
            script = Detector(Path(tmp) / "m", "torchscript", num_threads=t).run_batch
            with torch.inference_mode():
                row["ms"][t] = _time({
                    "eager": partial(wrapper, x),
                    "onnx": partial(onnx, batch),
                    "torchscript": partial(script, batch),
                    "peer": partial(tv_model, tv_x),
                }, warmup, runs)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", action="append", default=None, help="config(s) to time (default: see the doc)")
    p.add_argument("--zoo", action="store_true", help="also the TF2 zoo configs odkit supports (from ../shared)")
    p.add_argument("--quick", action="store_true", help="2 threads only, 3 runs, no Faster R-CNN")
    p.add_argument("--threads", default="1,2", help="comma list of intra-op thread counts")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--image", default=None, help="image to time on (default: a pets image from ../shared, else noise)")
    args = p.parse_args(argv)

    import torch

    from odkit.config import load
    from odkit.inference.images import load_image

    threads = [int(t) for t in args.threads.split(",")]
    runs = args.runs
    if args.quick:
        threads, runs = [2], 3
    compat = _compat_dir()
    if args.config:
        configs = [Path(c) for c in args.config]
    else:
        configs = sorted((REPO / "configs").glob("*.config"))
        if compat is None:
            print(f"({SHARED}/compat/tfod_configs not found (set ODKIT_SHARED_DIR): skipping the reference pets, "
                  "Faster R-CNN and zoo configs)")
        else:
            configs.append(compat / REFERENCE)
            if not args.quick:
                configs.append(compat / FASTER_RCNN)
            if args.zoo:
                configs += [compat / z for z in ZOO]
    image_path = args.image or next(iter(sorted((SHARED / "datasets/oxford_pets_subset/images").glob("*.jpg"))), None)
    pixels = load_image(image_path) if image_path else np.random.default_rng(0).integers(0, 255, (375, 500, 3), np.uint8)
    print(f"image {image_path or 'noise'} {pixels.shape[1]}x{pixels.shape[0]}; batch 1; median of 2 blocks of "
          f"{-(-runs // 2)} runs per runtime, each after {args.warmup} warm-up; torch {torch.__version__}; ms/image (ratio = peer ms / odkit ms)")

    seen: dict[bytes, str] = {}
    rows = []
    t_all = time.perf_counter()
    for path in configs:
        key = load(path).model.SerializeToString(deterministic=True)
        if key in seen:
            print(f"{path.name}: same model as {seen[key]} (not measured again)")
            continue
        seen[key] = path.name
        row = measure(path, pixels, threads, args.warmup, runs)
        rows.append(row)
        print(f"\n{row['config']} ({row['kind']}, {row['classes']} classes; detections odkit {row['dets'][0]}, "
              f"{row['peer']} {row['dets'][1]}; export {row['export_s']:.0f} s)")
        for t, ms in row["ms"].items():
            peer = ms["peer"]
            cells = "  ".join(f"{k} {v:7.1f} ({peer / v:4.2f}x)" for k, v in ms.items() if k != "peer")
            print(f"  {t} thread{'s' if t > 1 else ' '}: {cells}  | {row['peer']} {peer:7.1f}  "
                  f"| onnx/eager {ms['eager'] / ms['onnx']:4.2f}x")
        sys.stdout.flush()
    print(f"\ntotal {time.perf_counter() - t_all:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
