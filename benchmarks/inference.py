"""CPU inference speed at batch 1: odkit ONNX (onnxruntime), odkit eager, torchvision's same architecture eager.

    .venv/bin/python benchmarks/inference.py --pipeline_config_path src/odkit/configs/ssd_mobilenet_v2_fpnlite_128x128_demo.config

The model is built from the config with its initial weights (speed does not depend on training), exported
to ONNX in a temporary folder, and each runtime is timed on the same decoded image (resize, normalisation,
network and NMS included; image decoding excluded). Reports the median ms per image.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "src/odkit/configs/ssd_mobilenet_v2_fpnlite_128x128_demo.config"


def _time(fn: Callable[[], object], warmup: int, runs: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def _torchvision_counterpart(arch: str, feature_extractor: str, num_classes: int, size: tuple[int, int]):
    import torchvision.models.detection as tvd

    if arch == "ssd":
        if "resnet" in feature_extractor:
            name = "retinanet_resnet50_fpn"
            model = tvd.retinanet_resnet50_fpn(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                               min_size=min(size), max_size=max(size))
        else:
            name = "ssdlite320_mobilenet_v3_large"
            model = tvd.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                      num_classes=num_classes + 1)
            model.transform.min_size = (min(size),)
            model.transform.max_size = max(size)
    else:
        name = "fasterrcnn_resnet50_fpn" if "resnet" in feature_extractor else "fasterrcnn_mobilenet_v3_large_fpn"
        model = getattr(tvd, name)(weights=None, weights_backbone=None, num_classes=num_classes + 1,
                                   min_size=min(size), max_size=max(size))
    return name, model.eval()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pipeline_config_path", default=str(DEFAULT_CONFIG))
    p.add_argument("--image", default=None, help="image to time on (default: a pets image from ../shared, else noise)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    args = p.parse_args(argv)

    import torch

    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.export.exporter import export_model
    from odkit.export.wrapper import ExportWrapper
    from odkit.inference.detector import Detector
    from odkit.inference.images import load_image
    from odkit.inputs.resizers import build_image_resizer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = load(args.pipeline_config_path)
    arch = config.model.WhichOneof("model")
    arch_cfg = getattr(config.model, arch)
    model = build_model(config.model, is_training=False).eval()
    resizer = build_image_resizer(arch_cfg.image_resizer).eval()
    image_path = args.image or next(iter(sorted((REPO.parent / "shared/datasets/oxford_pets_subset/images").glob("*.jpg"))), None)
    pixels = load_image(image_path) if image_path else np.random.default_rng(0).integers(0, 255, (375, 500, 3), np.uint8)
    size = tuple(model.input_size or (pixels.shape[0], pixels.shape[1]))

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        export_model(model, resizer, Path(tmp) / "m", formats=["onnx"])
        export_s = time.perf_counter() - t0
        det = Detector(Path(tmp) / "m", "onnx", num_threads=args.threads)
        batch = pixels[None]
        results["odkit ONNX (onnxruntime)"] = _time(lambda: det.run_batch(batch), args.warmup, args.runs)

    wrapper = ExportWrapper(model, resizer, ("detection_boxes", "detection_scores", "detection_classes",
                                             "num_detections")).eval()
    x = torch.from_numpy(np.array(pixels))[None]
    with torch.inference_mode():
        results["odkit eager (torch)"] = _time(lambda: wrapper(x), args.warmup, args.runs)
        name, tv_model = _torchvision_counterpart(arch, arch_cfg.feature_extractor.type, model.num_classes, size)
        tv_x = [x[0].permute(2, 0, 1).float() / 255.0]
        results[f"torchvision {name} eager (weights=None)"] = _time(lambda: tv_model(tv_x), args.warmup, args.runs)

    print(f"config: {args.pipeline_config_path} ({arch}, {arch_cfg.feature_extractor.type}, input {size})")
    print(f"image: {image_path or 'noise'} {pixels.shape[1]}x{pixels.shape[0]}; batch 1; {args.threads} threads; "
          f"median of {args.runs} runs; ONNX export took {export_s:.1f} s")
    for k, v in results.items():
        print(f"  {k:55s} {v:8.1f} ms/image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
