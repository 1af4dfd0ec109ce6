"""Export of a CenterNet (the zoo Hourglass config's resizer and heads, a small hourglass_10 backbone, 128 px)
with peak extraction (max-pool + top-k over the flattened heatmap) and the optional post-processing NMS
inside the graph; ONNX / TorchScript / eager agree on real images."""

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

pytestmark = pytest.mark.slow  # two small exports + verification: ~15 s CPU

CONFIG = "centernet_hourglass104_512x512_coco17_tpu-8.config"
SIZE = 128
NMS = """post_processing { batch_non_max_suppression { score_threshold: 0.2 iou_threshold: 0.5
  max_detections_per_class: 8 max_total_detections: 8 use_class_agnostic_nms: %s max_classes_per_detection: 1 } }"""


def _spread_center_logits(model: torch.nn.Module) -> None:
    """Untrained centre logits all sit near the -2.19 bias (scores ~0.1): re-draw the last centre conv so peak
    scores spread over (0, 1) and the comparison covers detections above 0.3."""
    last = model.center_heads[-1][-1]
    torch.manual_seed(3)
    with torch.no_grad():
        last.weight.normal_(std=2.0 / last.weight.shape[1] ** 0.5)
        last.bias.zero_()


@pytest.fixture(scope="module", params=["no_nms", "nms"])
def center_net(request, compat_dir, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from google.protobuf import text_format

    from odkit.builders.model_builder import build_model
    from odkit.config import load
    from odkit.export.resize import export_resizer
    from odkit.inputs.resizers import build_image_resizer

    config = load(compat_dir / "tfod_configs" / CONFIG)
    cn = config.model.center_net
    cn.num_classes = 3
    cn.feature_extractor.type = "hourglass_10"
    cn.image_resizer.keep_aspect_ratio_resizer.min_dimension = SIZE
    cn.image_resizer.keep_aspect_ratio_resizer.max_dimension = SIZE
    cn.object_center_params.max_box_predictions = 20
    for head in (cn.object_center_params.center_head_params, cn.object_detection_task.scale_head_params,
                 cn.object_detection_task.offset_head_params):
        head.num_filters.append(32)
        head.kernel_sizes.append(3)
    if request.param == "nms":
        text_format.Merge(NMS % "false", cn)
    torch.manual_seed(0)
    model = build_model(config.model, is_training=False).eval()
    _spread_center_logits(model)
    resizer = export_resizer(build_image_resizer(cn.image_resizer))
    out = tmp_path_factory.mktemp("center_net") / "model"
    result = export_model(model, resizer, out)
    return {"out": out, "info": result.info, "wrapper": ExportWrapper(model, resizer, tuple(result.info["outputs"])),
            "nms": request.param == "nms"}


def test_center_net_export_info(center_net):
    info = json.loads((center_net["out"] / "export_info.json").read_text())
    assert info["input_size"] == [SIZE, SIZE] and info["num_classes"] == 3
    assert info["outputs"][:4] == ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
    for fmt in ("onnx", "torchscript"):
        assert info["formats"][fmt]["verification"]["detections_compared"] > 0


def test_center_net_onnx_torchscript_eager_agree_on_real_images(center_net, shared_dir):
    paths = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    paths += sorted((shared_dir / "datasets" / "oxford_pets_subset" / "images").glob("*.jpg"))[:1]
    wrapper = center_net["wrapper"].eval()
    detectors = [Detector(center_net["out"], "onnx"), Detector(center_net["out"], "torchscript")]
    compared = 0
    for path in paths:
        pixels = load_image(path)
        with torch.no_grad():
            eager = {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(torch.from_numpy(pixels[None])))}
        n_det = int(eager["num_detections"][0])
        assert 0 < n_det <= (8 if center_net["nms"] else 20)
        for det in detectors:
            raw = det.detect_raw(pixels)
            problems, n, _ = match_detections(eager, raw, min_score=0.3, box_tol=1e-3)
            assert problems == [], (path, det.backend.name, problems)
            compared += n
            # without NMS the exported peak extraction must give the very same ranked list
            if not center_net["nms"]:
                np.testing.assert_allclose(raw["detection_scores"], eager["detection_scores"], atol=1e-4)
                np.testing.assert_allclose(raw["detection_boxes"], eager["detection_boxes"], atol=1e-3)
    assert compared > 0
