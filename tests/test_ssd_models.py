"""SSD models build from every SSD pipeline.config in the shared TF OD API set; anchors; forward shapes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from odkit.builders.model_builder import build_model
from odkit.errors import UnsupportedError
from odkit.protos import pipeline_pb2

# TF1 configs whose extractors odkit does not implement (Inception, PPN): they must fail with a clear error.
UNSUPPORTED_EXTRACTORS = {"ssd_inception_v2", "ssd_inception_v3", "ssd_mobilenet_v1_ppn"}


def _ssd_configs(compat_dir: Path) -> list[Path]:
    d = compat_dir / "tfod_configs"
    return sorted(d.glob("*ssd*.config")) + sorted((d / "tf1").glob("ssd*.config"))


def _parse(path: Path) -> pipeline_pb2.TrainEvalPipelineConfig:
    return text_format.Parse(path.read_text(), pipeline_pb2.TrainEvalPipelineConfig())


def test_every_shared_ssd_config_builds(compat_dir, capsys):
    """Build (on the meta device: no weights allocated) and print parameter counts per config."""
    paths = _ssd_configs(compat_dir)
    assert len(paths) >= 30
    counts: dict[str, int] = {}
    in_graph: dict[str, int] = {}
    for path in paths:
        cfg = _parse(path)
        fe_type = cfg.model.ssd.feature_extractor.type
        if fe_type in UNSUPPORTED_EXTRACTORS:
            with pytest.raises(UnsupportedError, match="feature_extractor type"):
                with torch.device("meta"):
                    build_model(cfg.model, True)
            continue
        with torch.device("meta"):
            model = build_model(cfg.model, True)
        counts[path.name] = sum(p.numel() for p in model.parameters())
        # EfficientDet also holds the Keras EfficientNet's `top` conv/bn and `logits` (never run, frozen, so TF
        # checkpoints are consumed whole), which the published counts leave out
        backbone = getattr(model.feature_extractor, "backbone", None)
        in_graph[path.name] = counts[path.name] - sum(
            p.numel() for m in (getattr(backbone, "top", None), getattr(backbone, "logits", None))
            if m is not None for p in m.parameters())
    with capsys.disabled():
        print("\nSSD parameter counts:")
        for name, n in counts.items():
            print(f"  {n / 1e6:8.2f}M  {name}")
    assert len(counts) >= 27
    # EfficientDet parameter counts as published (Tan et al.): D0 3.9M, D1 6.6M, D3 12.0M
    assert abs(in_graph["ssd_efficientdet_d0_512x512_coco17_tpu-8.config"] / 1e6 - 3.9) < 0.1
    assert abs(in_graph["ssd_efficientdet_d1_640x640_coco17_tpu-8.config"] / 1e6 - 6.6) < 0.1
    assert abs(in_graph["ssd_efficientdet_d3_896x896_coco17_tpu-32.config"] / 1e6 - 12.0) < 0.1
    # deeper backbones have more parameters than shallower ones with the same head
    assert (counts["ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"]
            < counts["ssd_resnet101_v1_fpn_640x640_coco17_tpu-8.config"]
            < counts["ssd_resnet152_v1_fpn_640x640_coco17_tpu-8.config"])


def test_pets_reference_anchor_count_640(compat_dir):
    cfg = _parse(compat_dir / "tfod_configs" / "pets_ssd_resnet50_v1_fpn_640x640.config")
    with torch.device("meta"):
        model = build_model(cfg.model, True)
    assert model.input_size == (640, 640)
    shapes = [(640 // 2**lvl, 640 // 2**lvl) for lvl in range(3, 8)]
    anchors = model.anchor_generator.generate(shapes, 640, 640, device="cpu")
    assert anchors.shape == (51150, 4)
    assert model.anchor_generator.num_anchors_per_location() == [6] * 5


@pytest.mark.parametrize("name,size,levels", [
    ("ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8.config", 128, 5),
    ("ssd_efficientdet_d0_512x512_coco17_tpu-8.config", 128, 5),
    ("tf1/ssd_mobilenet_v1_pets.config", 96, 6),
])
def test_forward_small(compat_dir, name, size, levels):
    """Real forward + loss + postprocess at a small input size; anchors line up with predictions."""
    torch.manual_seed(0)
    cfg = _parse(compat_dir / "tfod_configs" / name)
    model = build_model(cfg.model, True)
    assert len(model.anchor_generator.num_anchors_per_location()) == levels
    n_cls = cfg.model.ssd.num_classes
    images = torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8)
    pd = model.predict(model.preprocess(images))
    a = pd["anchors"].shape[0]
    assert pd["box_encodings"].shape == (2, a, 4)
    slots = n_cls + (1 if cfg.model.ssd.add_background_class else 0)
    assert pd["class_predictions_with_background"].shape == (2, a, slots)
    gt = {"boxes": torch.tensor([[[0.1, 0.1, 0.6, 0.5], [0, 0, 0, 0]], [[0.2, 0.3, 0.9, 0.8], [0.5, 0.5, 0.7, 0.9]]]),
          "classes": torch.tensor([[3, 0], [1, n_cls]]), "weights": torch.tensor([[1.0, 0.0], [1.0, 1.0]]),
          "num_boxes": torch.tensor([1, 2])}
    losses = model.loss(pd, gt, torch.tensor([[size, size, 3]] * 2))
    total = losses["Loss/localization_loss"] + losses["Loss/classification_loss"] + model.regularization_loss()
    assert torch.isfinite(total) and total > 0
    total.backward()
    model.eval()
    with torch.no_grad():
        det = model(images, torch.tensor([[size, size, 3], [size // 2, size, 3]]))
    k = cfg.model.ssd.post_processing.batch_non_max_suppression.max_total_detections
    assert det["detection_boxes"].shape == (2, k, 4)
    assert det["detection_multiclass_scores"].shape == (2, k, n_cls)
    assert det["raw_detection_scores"].shape == (2, a, n_cls)
    nd = det["num_detections"].long()
    for i in range(2):
        cls = det["detection_classes"][i, : nd[i]]
        assert ((cls >= 1) & (cls <= n_cls)).all()
        assert (det["detection_classes"][i, nd[i]:] == 0).all()
