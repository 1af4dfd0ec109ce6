"""One training step's forward: preprocess + predict (under autocast) + losses, as one module DDP can wrap."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn

from odkit.training.precision import Precision


class TrainStep(nn.Module):
    """preprocess + predict (under autocast) + loss (float32) in one forward, so DDP sees it."""

    def __init__(self, model: nn.Module, precision: Precision, add_regularization_loss: bool, channels_last: bool):
        super().__init__()
        self.model = model
        self.precision = precision
        self.add_regularization_loss = add_regularization_loss
        self.channels_last = channels_last

    def forward(
        self, images: torch.Tensor, groundtruth: dict[str, torch.Tensor], true_image_shapes: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        m = self.model
        amp = (
            torch.autocast(device_type=images.device.type, dtype=self.precision.dtype)
            if self.precision.dtype is not None
            else contextlib.nullcontext()
        )
        with amp:
            x = m.preprocess(images)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            pred = m.predict(x)
        if self.precision.dtype is not None:
            pred = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in pred.items()}
        losses = dict(m.loss(pred, groundtruth, true_image_shapes))
        if self.add_regularization_loss:
            losses["Loss/regularization_loss"] = m.regularization_loss().float()
        losses["Loss/total_loss"] = torch.stack([v.float() for v in losses.values()]).sum()
        return losses


def batch_to_device(batch: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    nb = device.type == "cuda"
    images = batch["images"].to(device, non_blocking=nb)
    gt = {k: v.to(device, non_blocking=nb) for k, v in batch["groundtruth"].items() if torch.is_tensor(v)}
    shapes = batch["true_image_shapes"].to(device, non_blocking=nb)
    return images, gt, shapes
