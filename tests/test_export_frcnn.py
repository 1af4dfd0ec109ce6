"""Export of the real Faster R-CNN (TF2 zoo ResNet-50 640x640 config shrunk to 96 px) with its
keep_aspect_ratio_resizer + pad_to_max_dimension inside the graph; ONNX / TorchScript / eager agree."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from odkit.export.compare import match_detections
from odkit.export.exporter import export_model
from odkit.export.wrapper import ExportWrapper
from odkit.inference.detector import Detector
from odkit.inference.images import load_image

pytestmark = pytest.mark.slow  # ResNet-50 export + verification: ~40 s CPU

CONFIG = "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
SIZE = 96


def _tame_untrained_heads(model: torch.nn.Module, resizer: torch.nn.Module) -> None:
    """An untrained ResNet gives huge features that all point the same way: softmax scores saturate (ties)
    and box deltas explode. Re-draw the head layers on the statistics of their inputs: centred class
    logits ~N(0, 3) that differ between proposals, box deltas ~N(0, 0.1)."""
    layers: dict[str, tuple[torch.nn.Module, float]] = {}
    for prefix, head in (("rpn_head", model.rpn_head), ("box_predictor", model.box_predictor)):
        for name, layer in head.named_modules():
            if isinstance(layer, (torch.nn.Linear, torch.nn.Conv2d)) and layer.bias is not None:
                if "class" in name:
                    layers[f"{prefix}.{name}"] = (layer, 3.0)
                elif "box" in name:
                    layers[f"{prefix}.{name}"] = (layer, 0.1)
    assert any(k.startswith("box_predictor.") and "class" in k for k in layers), list(layers)
    inputs: dict[str, torch.Tensor] = {}
    hooks = []
    for key, (layer, _) in layers.items():
        def hook(_m, inp, _out, key=key):
            x = inp[0].detach()
            inputs[key] = x.movedim(1, -1).reshape(-1, x.shape[1]) if x.dim() == 4 else x
        hooks.append(layer.register_forward_hook(hook))
    x = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (1, 80, 120, 3), dtype=np.uint8))
    with torch.no_grad():
        ExportWrapper(model, resizer, ("num_detections",))(x)
    for h in hooks:
        h.remove()
    torch.manual_seed(1)
    with torch.no_grad():
        for key, (layer, scale) in layers.items():
            if key not in inputs:  # a layer this input did not reach
                continue
            feats = inputs[key]
            mean = feats.mean(0)
            spread = float((feats - mean).norm(dim=1).mean()) + 1e-6
            layer.weight.normal_(std=scale / spread)
            bias = -(layer.weight.reshape(layer.weight.shape[0], -1) @ mean)
            layer.bias.copy_(bias)


@pytest.fixture(scope="module")
def frcnn(compat_dir, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.export.resize import export_resizer
    from odkit.inputs.resizers import build_image_resizer

    config = load(compat_dir / "tfod_configs" / CONFIG)
    fr = config.model.faster_rcnn
    fr.num_classes = 3
    fr.image_resizer.keep_aspect_ratio_resizer.min_dimension = SIZE
    fr.image_resizer.keep_aspect_ratio_resizer.max_dimension = SIZE
    fr.first_stage_max_proposals = 16
    nms = fr.second_stage_post_processing.batch_non_max_suppression
    nms.max_detections_per_class = nms.max_total_detections = 10
    torch.manual_seed(0)
    model = build_model(config.model, is_training=False).eval()
    resizer = export_resizer(build_image_resizer(fr.image_resizer))
    _tame_untrained_heads(model, resizer)
    out = tmp_path_factory.mktemp("frcnn") / "model"
    result = export_model(model, resizer, out)
    return {"out": out, "info": result.info, "wrapper": ExportWrapper(model, resizer, tuple(result.info["outputs"]))}


def test_frcnn_export_info(frcnn):
    info = json.loads((frcnn["out"] / "export_info.json").read_text())
    assert info["input_size"] == [SIZE, SIZE] and info["num_classes"] == 3
    assert "raw_detection_scores" in info["outputs"]
    for fmt in ("onnx", "torchscript"):
        assert info["formats"][fmt]["verification"]["max_raw_diff"] < 1e-3


def test_frcnn_onnx_torchscript_eager_agree_on_real_images(frcnn, shared_dir):
    paths = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    paths += sorted((shared_dir / "datasets" / "oxford_pets_subset" / "images").glob("*.jpg"))[:1]
    wrapper = frcnn["wrapper"].eval()
    detectors = [Detector(frcnn["out"], "onnx"), Detector(frcnn["out"], "torchscript")]
    compared = 0
    for path in paths:
        pixels = load_image(path)
        with torch.no_grad():
            eager = {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(torch.from_numpy(pixels[None])))}
        for det in detectors:
            raw = det.detect_raw(pixels)
            problems, n, worst = match_detections(eager, raw, min_score=0.3, box_tol=1e-3)
            assert problems == [], (path, det.backend.name)
            compared += n
            np.testing.assert_allclose(raw["raw_detection_scores"], eager["raw_detection_scores"], atol=1e-3)
    assert compared > 0
