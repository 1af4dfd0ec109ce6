"""A tiny single-stage detector and fixed resizer that follow the DetectionModel contract; an untrained demo SSD export.

Used by the export / inference tests and smoke checks where no pipeline.config is needed. Its
post-processing has the same shape as the TF OD API's (sigmoid scores, per-class NMS with
``torchvision.ops.batched_nms``, top-K padded output) and exports to ONNX NonMaxSuppression.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms


class FixedResizer(nn.Module):
    """Resize float ``[B,3,H,W]`` to a fixed (height, width); true shapes are the full output."""

    def __init__(self, height: int, width: int) -> None:
        super().__init__()
        self.height, self.width = height, width

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = F.interpolate(images, size=(self.height, self.width), mode="bilinear", align_corners=False)
        shape = torch.tensor([self.height, self.width, 3], dtype=torch.int64)
        return out, shape.expand(images.shape[0], 3)


class TinyDetector(nn.Module):
    """Conv backbone (stride 8) + one anchor per cell + box/class heads; 1-based output classes."""

    def __init__(
        self,
        num_classes: int = 3,
        input_size: tuple[int, int] = (64, 64),
        score_threshold: float = 0.05,
        iou_threshold: float = 0.5,
        max_total_detections: int = 20,
        anchor_size: float = 0.25,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_size = input_size
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_total_detections = max_total_detections
        self.backbone_param_prefixes = ("backbone.",)
        self.feature_extractor_param_prefixes = ("backbone.",)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.box_head = nn.Conv2d(16, 4, 3, padding=1)
        self.cls_head = nn.Conv2d(16, num_classes, 3, padding=1)
        gh, gw = input_size[0] // 8, input_size[1] // 8
        cy = (torch.arange(gh, dtype=torch.float32) + 0.5) / gh
        cx = (torch.arange(gw, dtype=torch.float32) + 0.5) / gw
        yy, xx = torch.meshgrid(cy, cx, indexing="ij")
        anchors = torch.stack([yy.flatten(), xx.flatten()], 1)
        size = torch.full_like(anchors, anchor_size)
        self.register_buffer("anchors", torch.cat([anchors, size], 1), persistent=False)  # cy, cx, h, w

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32) * (2.0 / 255.0) - 1.0

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.backbone(images)
        b = feats.shape[0]
        box = self.box_head(feats).permute(0, 2, 3, 1).reshape(b, -1, 4)
        cls = self.cls_head(feats).permute(0, 2, 3, 1).reshape(b, -1, self.num_classes)
        return {"box_encodings": box, "class_predictions_with_background": cls}

    def _decode(self, enc: torch.Tensor) -> torch.Tensor:
        a = self.anchors
        cy = enc[..., 0] * 0.1 * a[:, 2] + a[:, 0]
        cx = enc[..., 1] * 0.1 * a[:, 3] + a[:, 1]
        h = torch.exp(enc[..., 2].clamp(max=4.0) * 0.2) * a[:, 2]
        w = torch.exp(enc[..., 3].clamp(max=4.0) * 0.2) * a[:, 3]
        return torch.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], -1).clamp(0.0, 1.0)

    def postprocess(self, prediction: dict[str, torch.Tensor], true_image_shapes: torch.Tensor) -> dict:
        boxes = self._decode(prediction["box_encodings"])  # [B, A, 4] normalized (full input = true image)
        scores = torch.sigmoid(prediction["class_predictions_with_background"])  # [B, A, C]
        k = self.max_total_detections
        out: dict[str, list[torch.Tensor]] = {n: [] for n in ("boxes", "scores", "classes", "num", "multi")}
        for i in range(boxes.shape[0]):
            flat = scores[i].reshape(-1)
            idx = torch.nonzero(flat > self.score_threshold).reshape(-1)
            anchor_idx = idx // self.num_classes
            cls_idx = idx % self.num_classes
            cand_boxes, cand_scores = boxes[i][anchor_idx], flat[idx]
            keep = batched_nms(cand_boxes[:, [1, 0, 3, 2]], cand_scores, cls_idx, self.iou_threshold)[:k]
            n = keep.shape[0]
            pad = k - n
            out["boxes"].append(F.pad(cand_boxes[keep], (0, 0, 0, pad)))
            out["scores"].append(F.pad(cand_scores[keep], (0, pad)))
            out["classes"].append(F.pad((cls_idx[keep] + 1).to(torch.float32), (0, pad)))
            out["multi"].append(F.pad(scores[i][anchor_idx[keep]], (0, 0, 0, pad)))
            out["num"].append(torch.ones_like(keep, dtype=torch.float32).sum().reshape(1))
        return {
            "detection_boxes": torch.stack(out["boxes"]),
            "detection_scores": torch.stack(out["scores"]),
            "detection_classes": torch.stack(out["classes"]),
            "num_detections": torch.cat(out["num"]),
            "raw_detection_boxes": boxes,
            "raw_detection_scores": scores,
            "detection_multiclass_scores": torch.stack(out["multi"]),
        }

    def forward(self, images: torch.Tensor, true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.postprocess(self.predict(self.preprocess(images)), true_image_shapes)


def export_untrained_demo_ssd(
    output_dir: str | os.PathLike[str], size: int = 64, class_names: Sequence[str] = ("raccoon",), seed: int = 0,
) -> Path:
    """Export the demo SSD (MobileNet v2 FPN-lite) at ``size`` x ``size`` with random He-initialised convs.

    A real architecture with a dynamic-batch ONNX graph for serving / inference tests and benchmarks; the
    default init would give near-identical scores everywhere, He init spreads them. Returns the export dir.
    """
    from odkit.builders.model_builder import build_model
    from odkit.checkpoints import save_checkpoint
    from odkit.config import load, save
    from odkit.workflows.export import export_from_config

    out = Path(output_dir)
    work = out.with_name(f".{out.name}.work")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        label_map = work / "label_map.pbtxt"
        label_map.write_text("".join(f'item {{ id: {i} name: "{n}" }}\n' for i, n in enumerate(class_names, 1)))
        config = load(Path(__file__).resolve().parents[1] / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config")
        config.model.ssd.num_classes = len(class_names)
        config.model.ssd.image_resizer.fixed_shape_resizer.height = size
        config.model.ssd.image_resizer.fixed_shape_resizer.width = size
        config.train_input_reader.label_map_path = str(label_map)
        del config.eval_input_reader[:]
        save(config, work / "pipeline.config")
        torch.manual_seed(seed)
        model = build_model(config.model, is_training=False).eval()
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        save_checkpoint(work / "train", 1, model.state_dict())
        export_from_config(str(work / "pipeline.config"), str(work / "train"), str(out), formats=["onnx"],
                           allow_unsupported=True, log=lambda _msg: None)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
