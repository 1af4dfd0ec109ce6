"""SSD meta-architecture (TF OD API `SSDMetaArch`) on the `DetectionModel` contract.

prediction_dict (predict):
  box_encodings                      float [B, A, code_size]
  class_predictions_with_background  float [B, A, C'] (C' = num_classes + 1 when add_background_class)
  anchors                            float [A, 4] normalized to the (padded) model input
  preprocessed_shape                 int64 [2] (H, W) of the model input

loss: batched target assignment (argmax/bipartite matcher over padded groundtruth), per-anchor losses,
optional hard example mining or random example sampling, normalisation by the number of matches (and
code size), classification/localization weights -> {"Loss/localization_loss", "Loss/classification_loss"}.
No host syncs.

postprocess: decode, score converter (SIGMOID / SOFTMAX / IDENTITY with logit_scale), drop the background
column, batched multiclass NMS clipped to the true image window, boxes re-expressed in the true image frame.
Detection classes are 1-based label ids (float).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from odkit.models.base import DetectionModel


@dataclass
class SSDLossConfig:
    classification_weight: float = 1.0
    localization_weight: float = 1.0
    normalize_loss_by_num_matches: bool = True
    normalize_loc_loss_by_codesize: bool = False


class SSDMetaArch(DetectionModel):
    """Feature extractor + box predictor + anchors, with TF OD API SSD training and inference semantics.

    Components (built by odkit.builders.model_builder from the odkit.core builders):
      anchor_generator: `num_anchors_per_location()`, `generate(shapes, im_h, im_w, device) -> [A, 4]`
      box_coder: `encode(boxes, anchors)`, `decode(codes, anchors)`, `code_size`
      assign_targets(anchors, groundtruth) -> (cls_targets [B,A,C'], cls_weights [B,A,C'],
                                               reg_targets [B,A,code], reg_weights [B,A], matches [B,A])
      classification_loss(pred [B,A,C'], target, weights [B,A,C']) -> [B,A,C'] (or [B,A])
      localization_loss(pred [B,A,code], target, weights [B,A]) -> [B,A]
      hard_example_miner(loc_losses [B,A], cls_losses [B,A], decoded_boxes [B,A,4], matches [B,A])
          -> (loc_loss_sum, cls_loss_sum)   optional
      sample_fn(cls_targets, cls_weights [B,A]) -> indicator [B,A] float   optional (random_example_sampler)
      score_converter(logits) -> scores
      nms_fn(boxes [B,A,1,4], scores [B,A,C], clip_window [B,4]) -> odkit.core.post_processing.NmsResult
          (boxes [B,K,4] in the clip window frame, scores [B,K], classes [B,K] 0-based, num_detections [B],
          anchor_indices [B,K])
    """

    def __init__(self, *, num_classes: int, feature_extractor: nn.Module, box_predictor: nn.Module,
                 anchor_generator, box_coder, assign_targets: Callable, classification_loss: Callable,
                 localization_loss: Callable, score_converter: Callable, nms_fn: Callable,
                 loss_config: SSDLossConfig | None = None, add_background_class: bool = True,
                 hard_example_miner: Callable | None = None, sample_fn: Callable | None = None,
                 input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.feature_extractor = feature_extractor
        self.box_predictor = box_predictor
        self.anchor_generator = anchor_generator
        self.box_coder = box_coder
        self.assign_targets = assign_targets
        self.classification_loss = classification_loss
        self.localization_loss = localization_loss
        self.score_converter = score_converter
        self.nms_fn = nms_fn
        self.loss_config = loss_config or SSDLossConfig()
        self.add_background_class = add_background_class
        self.hard_example_miner = hard_example_miner
        self.sample_fn = sample_fn
        self.input_size = input_size
        self.backbone_param_prefixes = ("feature_extractor.backbone.",)
        self.feature_extractor_param_prefixes = ("feature_extractor.",)

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor.preprocess(images)

    def anchors_for(self, features: list[torch.Tensor], height: int, width: int) -> torch.Tensor:
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        return self.anchor_generator.generate(shapes, int(height), int(width), device=features[0].device)

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.feature_extractor(images)
        box_encodings, class_predictions = self.box_predictor(features)
        anchors = self.anchors_for(features, images.shape[-2], images.shape[-1])
        return {
            "box_encodings": box_encodings,
            "class_predictions_with_background": class_predictions,
            "anchors": anchors.to(box_encodings.dtype),
            "preprocessed_shape": torch.tensor([images.shape[-2], images.shape[-1]], dtype=torch.int64,
                                               device=images.device),
        }

    def _clip_windows(self, prediction_dict: dict[str, torch.Tensor], true_image_shapes: torch.Tensor) -> torch.Tensor:
        hw = prediction_dict["preprocessed_shape"].to(torch.float32)
        true = true_image_shapes[:, :2].to(torch.float32).to(hw.device)
        frac = true / hw
        zeros = torch.zeros_like(frac)
        return torch.cat([zeros, frac], dim=1)  # [B, 4] = (0, 0, h/H, w/W)

    def postprocess(self, prediction_dict: dict[str, torch.Tensor],
                    true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        box_encodings = prediction_dict["box_encodings"].float()
        anchors = prediction_dict["anchors"].float()
        boxes = self.box_coder.decode(box_encodings, anchors.unsqueeze(0))
        scores = self.score_converter(prediction_dict["class_predictions_with_background"].float())
        if self.add_background_class:
            scores = scores[..., 1:]
        windows = self._clip_windows(prediction_dict, true_image_shapes)
        nms = self.nms_fn(boxes.unsqueeze(2), scores, windows)
        idx = nms.anchor_indices.clamp(min=0)
        multiclass = torch.gather(scores, 1, idx.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
        valid = (torch.arange(idx.shape[1], device=idx.device).unsqueeze(0)
                 < nms.num_detections.to(idx.device).unsqueeze(1))
        multiclass = multiclass * valid.unsqueeze(-1).to(multiclass.dtype)
        # raw boxes in the true image frame
        scale = torch.cat([windows[:, 2:], windows[:, 2:]], dim=1).unsqueeze(1)
        raw_boxes = boxes / scale
        return {
            "detection_boxes": nms.boxes,
            "detection_scores": nms.scores,
            "detection_classes": (nms.classes.float() + 1.0) * valid.float(),
            "num_detections": nms.num_detections.float(),
            "raw_detection_boxes": raw_boxes,
            "raw_detection_scores": scores,
            "detection_multiclass_scores": multiclass,
        }

    # ------------------------------------------------------------------ training
    def loss(self, prediction_dict: dict[str, torch.Tensor], groundtruth: dict[str, torch.Tensor],
             true_image_shapes: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        cfg = self.loss_config
        box_encodings = prediction_dict["box_encodings"].float()
        class_predictions = prediction_dict["class_predictions_with_background"].float()
        anchors = prediction_dict["anchors"].float()
        cls_targets, cls_weights, reg_targets, reg_weights, matches = self.assign_targets(anchors, groundtruth)
        if self.sample_fn is not None:
            indicator = self.sample_fn(cls_targets, cls_weights.mean(dim=-1)).to(reg_weights.dtype)
            reg_weights = reg_weights * indicator
            cls_weights = cls_weights * indicator.unsqueeze(-1)
        loc_losses = self.localization_loss(box_encodings, reg_targets, reg_weights)  # [B, A]
        cls_losses = self.classification_loss(class_predictions, cls_targets, cls_weights)
        if cls_losses.dim() == 3:
            cls_losses = cls_losses.sum(dim=-1)  # [B, A]
        if self.hard_example_miner is not None:
            decoded = self.box_coder.decode(box_encodings.detach(), anchors.unsqueeze(0))
            loc_loss, cls_loss = self.hard_example_miner(loc_losses, cls_losses, decoded, matches)
        else:
            loc_loss, cls_loss = loc_losses.sum(), cls_losses.sum()
        num_matches = reg_weights.detach().sum()
        normalizer = num_matches.clamp(min=1.0) if cfg.normalize_loss_by_num_matches else num_matches.new_ones(())
        loc_normalizer = normalizer * self.box_coder.code_size if cfg.normalize_loc_loss_by_codesize else normalizer
        return {
            "Loss/localization_loss": cfg.localization_weight * loc_loss / loc_normalizer,
            "Loss/classification_loss": cfg.classification_weight * cls_loss / normalizer,
        }
