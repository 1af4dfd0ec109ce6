"""`DetectionModel`: the model contract shared by SSD and Faster R-CNN (docs/ARCHITECTURE.md).

```
preprocess(images [B,3,H,W] uint8 or float) -> float     normalisation only, on device
predict(preprocessed) -> dict of raw tensors             no host syncs
loss(prediction_dict, groundtruth, true_image_shapes) -> {"Loss/...": scalar}
postprocess(prediction_dict, true_image_shapes) -> detections dict (TF OD API names)
regularization_loss() -> scalar                          sum of 0.5 * l2_weight * sum(w**2) (TF l2)
forward(images_uint8, true_image_shapes) -> detections   preprocess + predict + postprocess (export)
```
Attributes: `num_classes`, `input_size` ((H, W) or None), `backbone_param_prefixes` (state_dict name prefixes
of the feature-extractor backbone, for fine-tuning from classification checkpoints),
`feature_extractor_param_prefixes` (backbone + FPN / BiFPN / extra layers: what a `detection` fine-tune
restores, as the TF OD API's `restore_from_objects`; the heads are not under them).
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.errors import UnsupportedError
from odkit.models.hyperparams import l2_regularization_loss

_RESTORE_SCOPES = {  # fine_tune_checkpoint_type -> (model attribute, what it names, the other types to use)
    "classification": ("backbone_param_prefixes", "backbone", "detection or full"),
    "detection": ("feature_extractor_param_prefixes", "feature extractor", "full or classification"),
}


def restore_prefixes(model: nn.Module, kind: str) -> tuple[str, ...]:
    """The state_dict name prefixes a ``classification`` (backbone) or ``detection`` (feature extractor) fine-tune
    restores; a model that does not name them is refused (UnsupportedError at fine_tune_checkpoint_type)."""
    attr, what, other = _RESTORE_SCOPES[kind]
    prefixes = tuple(getattr(model, attr, ()) or ())
    if not prefixes:
        raise UnsupportedError(
            f"this model does not name its {what}, so a {kind} checkpoint cannot be restored",
            where="train_config.fine_tune_checkpoint_type",
            hint=f"use {other}",
        )
    return prefixes


class DetectionModel(nn.Module):
    num_classes: int
    input_size: tuple[int, int] | None = None
    backbone_param_prefixes: tuple[str, ...] = ()
    feature_extractor_param_prefixes: tuple[str, ...] = ()

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, prediction_dict: dict[str, torch.Tensor], groundtruth: dict[str, torch.Tensor],
             true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def postprocess(self, prediction_dict: dict[str, torch.Tensor],
                    true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def regularization_loss(self) -> torch.Tensor:
        """TF l2 regularization: sum over kernels of 0.5 * weight * sum(w**2) ("Loss/regularization_loss")."""
        return l2_regularization_loss(self)

    def forward(self, images: torch.Tensor, true_image_shapes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        if true_image_shapes is None:
            b, _, h, w = images.shape
            true_image_shapes = torch.tensor([h, w, 3], dtype=torch.int64, device=images.device).expand(b, 3)
        prediction_dict = self.predict(self.preprocess(images))
        return self.postprocess(prediction_dict, true_image_shapes)
