"""The exported graph: image tensor in, TF OD API detection dict out (pre- and post-processing inside)."""

from __future__ import annotations

import torch
from torch import nn

# Output order of the exported graphs (TF OD API names); the first four are required.
OUTPUT_NAMES: tuple[str, ...] = (
    "detection_boxes",
    "detection_scores",
    "detection_classes",
    "num_detections",
    "raw_detection_boxes",
    "raw_detection_scores",
    "detection_multiclass_scores",
    "detection_masks",  # Mask R-CNN: [B, K, mh, mw] per-box probabilities (TF); predict reframes them
    "detection_keypoints",  # keypoint models: [B, K, NK, 2] normalized (y, x) to the true image
    "detection_keypoint_scores",  # [B, K, NK]
)
REQUIRED_OUTPUTS = OUTPUT_NAMES[:4]
INPUT_NAME = "input_tensor"
INPUT_TYPES = ("image_tensor", "float_image_tensor", "encoded_image_string_tensor")


class ExportWrapper(nn.Module):
    """Runs resize -> model.preprocess -> model.predict -> model.postprocess on ``[B, H, W, 3]`` pixels.

    ``image_tensor`` takes uint8, ``float_image_tensor`` float32 pixel values in [0, 255]. Returns the
    detection tensors in ``output_names`` order (float32).
    """

    def __init__(self, model: nn.Module, resizer: nn.Module, output_names: tuple[str, ...]) -> None:
        super().__init__()
        self.model = model
        self.resizer = resizer
        self.output_names = tuple(output_names)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images.permute(0, 3, 1, 2).to(torch.float32)
        resized, true_shapes = self.resizer(x)
        prediction = self.model.predict(self.model.preprocess(resized))
        detections = self.model.postprocess(prediction, true_shapes.to(torch.int64))
        return tuple(detections[name].to(torch.float32) for name in self.output_names)


def available_outputs(model: nn.Module, resizer: nn.Module, sample: torch.Tensor) -> tuple[str, ...]:
    """Names from OUTPUT_NAMES that the model's postprocess returns (runs it once on ``sample``)."""
    with torch.no_grad():
        x = sample.permute(0, 3, 1, 2).to(torch.float32)
        resized, true_shapes = resizer(x)
        detections = model.postprocess(model.predict(model.preprocess(resized)), true_shapes.to(torch.int64))
    missing = [n for n in REQUIRED_OUTPUTS if n not in detections]
    if missing:
        raise RuntimeError(f"model.postprocess did not return {missing}")
    return tuple(n for n in OUTPUT_NAMES if n in detections)
