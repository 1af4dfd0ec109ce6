"""Faster R-CNN meta-architecture (TF OD API `meta_architectures/faster_rcnn_meta_arch.py`), two stages.

Coordinates: anchors, proposals and groundtruth are handled normalized to the padded model input
(IoU and the Faster R-CNN box coder are invariant to the per-axis scaling TF's absolute frame adds).

Flow (TF semantics):
- first stage: features = extractor.extract_proposal_features; RPN head -> box encodings / objectness for
  grid anchors (absolute pixels, normalized here). Anchors are clipped to the image when
  `clip_anchors_to_image` or at eval; in training otherwise anchors not entirely inside the image are masked
  (TF `_remove_invalid_anchors_and_predictions`: prune_outside_window drops every anchor that leaves it).
- proposals: decode, softmax objectness, greedy NMS (first_stage_nms_iou/score thresholds, at most
  first_stage_max_proposals; a sync-free loop on CPU, exact prefix NMS with one host sync on CUDA), clip to
  the true image window, drop zero-area boxes.
- RPN loss: IoU + ArgMaxMatcher(0.7, 0.3, force_match_for_each_row) + FasterRcnnBoxCoder(10, 10, 5, 5);
  first_stage_minibatch_size anchors sampled (positive_balance_fraction); smooth L1 + 2-class softmax,
  each summed per image / number sampled, averaged over the batch, times the first-stage weights.
- training: proposals are matched (ArgMaxMatcher(0.5), IoU < 0.5 negative) and second_stage_batch_size of
  them sampled (second_stage_balance_fraction), sorted by score; without a hard_example_miner only those go
  through the second stage. With a miner all proposals are kept and the miner picks the losses.
- second stage: TF crop_and_resize (see `faster_rcnn_heads.crop_and_resize`; FPN: each box from its level,
  TF `fpn_feature_levels`) of the proposal feature map to
  initial_crop_size, max pool (maxpool_kernel_size / maxpool_stride, VALID; 0 = none),
  extractor.extract_box_classifier_features, MaskRCNN box predictor.
- second-stage loss: per image normalised by the number of proposals and batch size, smooth L1 on the
  target class's encoding (or the shared one), configured classification loss; times the weights.
- postprocess: decode against the proposals, score converter, drop background, multiclass NMS clipped to
  the true image window with change_coordinate_frame (TF), classes + 1.

Because groundtruth reaches the model only in `loss()`, in training mode `predict()` returns the first-stage
outputs and `loss()` builds proposals, samples them and runs the second stage (same graph and gradients as
TF's predict-then-loss). In eval mode `predict()` runs both stages. `predict(images, true_image_shapes=None)`
clips proposals to the true window when it is given (forward() passes it), else to the whole input.
Prediction dict keys: rpn_box_encodings [B,A,4], rpn_objectness_predictions_with_background [B,A,2],
anchors [A,4], anchor_valid [A], rpn_features_to_crop (FPN: also rpn_features_to_crop_1, _2, ...),
preprocessed_shape [2]; after the second stage also
proposal_boxes [B,P,4] (normalized), proposal_scores [B,P], num_proposals [B], refined_box_encodings
[B,P,q,4], class_predictions_with_background [B,P,C+1].
number_of_stages: 1 (RPN only; detections are proposals, class 1), 2, or 3 (Mask R-CNN).

Masks (number_of_stages 3 with a `mask_head`, TF `_predict_third_stage`): in training the mask head runs on
the sampled proposals' box-classifier features (`mask_predictions` [B, P, q, mh, mw] logits, q = 1 or
num_classes); the loss crops each positive proposal's matched groundtruth mask (`groundtruth["masks"]`,
model-input frame) to mh x mw with crop_and_resize (bilinear), takes the target class's logits (background
proposals weigh 0) and sums the sigmoid cross entropy / max(positives * mh * mw, 1), times
second_stage_mask_prediction_loss_weight ("Loss/BoxClassifierLoss/mask_loss"). At inference postprocess
crops the features again for the final detection boxes, runs the box classifier and the mask head, keeps
the detected class's mask and returns `detection_masks` [B, K, mh, mw] = sigmoid (box frame; reframe to the
image with odkit.masks.reframe_box_masks_to_image_masks). TF crops with the detection boxes in the
true-image frame from the padded feature map; odkit maps them back to the padded frame first (identical
when the image is not padded, as with the zoo's fixed_shape_resizer). With number_of_stages 2 the mask
head is built (its weights restore) but unused, as in TF2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odkit.core import box_ops
from odkit.core.anchors import AnchorGenerator
from odkit.core.box_coders import FasterRcnnBoxCoder
from odkit.core.losses import Loss, WeightedSmoothL1LocalizationLoss, WeightedSoftmaxClassificationLoss
from odkit.core.matchers import ArgMaxMatcher
from odkit.core.post_processing import BatchNonMaxSuppression, ScoreConverter, greedy_nms_top_n
from odkit.core.samplers import BalancedPositiveNegativeSampler, HardExampleMiner
from odkit.core.similarity import IouSimilarity
from odkit.core.target_assigner import TargetAssigner, Targets
from odkit.models.base import DetectionModel
from odkit.models.faster_rcnn_heads import (
    MaskRCNNBoxPredictor,
    MaskRCNNMaskHead,
    RPNHead,
    crop_and_resize,
    multilevel_crop_and_resize,
)

NEG = torch.finfo(torch.float32).min


@dataclass
class FasterRcnnConfig:
    number_of_stages: int = 2
    first_stage_minibatch_size: int = 256
    first_stage_positive_balance_fraction: float = 0.5
    first_stage_nms_score_threshold: float = 0.0
    first_stage_nms_iou_threshold: float = 0.7
    first_stage_max_proposals: int = 300
    first_stage_localization_loss_weight: float = 1.0
    first_stage_objectness_loss_weight: float = 1.0
    initial_crop_size: int = 14
    maxpool_kernel_size: int = 2
    maxpool_stride: int = 2
    second_stage_batch_size: int = 64
    second_stage_balance_fraction: float = 0.25
    second_stage_localization_loss_weight: float = 1.0
    second_stage_classification_loss_weight: float = 1.0
    clip_anchors_to_image: bool = False
    second_stage_mask_prediction_loss_weight: float = 1.0


def _feature_key(level: int) -> str:
    return "rpn_features_to_crop" if level == 0 else f"rpn_features_to_crop_{level}"


def _features(pred: dict[str, Tensor]) -> list[Tensor]:
    out = []
    while _feature_key(len(out)) in pred:
        out.append(pred[_feature_key(len(out))])
    return out


class FasterRCNNMetaArch(DetectionModel):
    def __init__(
        self,
        *,
        num_classes: int,
        feature_extractor: nn.Module,
        anchor_generator: AnchorGenerator,
        rpn_head: RPNHead,
        box_predictor: MaskRCNNBoxPredictor | None,
        second_stage_nms: BatchNonMaxSuppression,
        second_stage_score_converter: ScoreConverter,
        config: FasterRcnnConfig | None = None,
        second_stage_classification_loss: Loss | None = None,
        hard_example_miner: HardExampleMiner | None = None,
        input_size: tuple[int, int] | None = None,
        mask_head: MaskRCNNMaskHead | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.cfg = config or FasterRcnnConfig()
        self.feature_extractor = feature_extractor
        self.anchor_generator = anchor_generator
        self.rpn_head = rpn_head
        self.box_predictor = box_predictor
        self.mask_head = mask_head
        self.second_stage_nms = second_stage_nms
        self.score_converter = second_stage_score_converter
        self.hard_example_miner = hard_example_miner
        self.input_size = input_size
        self.backbone_param_prefixes = tuple(
            "feature_extractor." + p for p in getattr(feature_extractor, "backbone_param_prefixes", ())
        )
        self.feature_extractor_param_prefixes = ("feature_extractor.",)
        self.box_coder = FasterRcnnBoxCoder((10.0, 10.0, 5.0, 5.0))
        self.proposal_assigner = TargetAssigner(
            IouSimilarity(), ArgMaxMatcher(0.7, 0.3, force_match_for_each_row=True), self.box_coder
        )
        self.detector_assigner = TargetAssigner(IouSimilarity(), ArgMaxMatcher(0.5, 0.5), self.box_coder)
        self.first_stage_sampler = BalancedPositiveNegativeSampler(
            self.cfg.first_stage_positive_balance_fraction
        )
        self.second_stage_sampler = BalancedPositiveNegativeSampler(self.cfg.second_stage_balance_fraction)
        self.first_stage_loc_loss = WeightedSmoothL1LocalizationLoss()
        self.first_stage_obj_loss = WeightedSoftmaxClassificationLoss()
        self.second_stage_loc_loss = WeightedSmoothL1LocalizationLoss()
        self.second_stage_cls_loss = second_stage_classification_loss or WeightedSoftmaxClassificationLoss()
        k, s = self.cfg.maxpool_kernel_size, self.cfg.maxpool_stride
        self.maxpool = nn.MaxPool2d(k, s) if k > 0 and s > 0 else nn.Identity()

    # ------------------------------------------------------------------ first stage
    def preprocess(self, images: Tensor) -> Tensor:
        return self.feature_extractor.preprocess(images.float())

    def _anchors(self, features: list[Tensor], image_h: int, image_w: int) -> tuple[Tensor, Tensor]:
        shapes = [(int(f.shape[-2]), int(f.shape[-1])) for f in features]
        anchors = self.anchor_generator.generate(shapes, image_h, image_w, device=features[0].device)
        if not getattr(self.anchor_generator, "normalize_coordinates", False):
            anchors = box_ops.to_normalized(anchors, image_h, image_w)  # grid anchors are in pixels
        if self.cfg.clip_anchors_to_image or not self.training:
            anchors = box_ops.clip_to_window(anchors, anchors.new_tensor([0.0, 0.0, 1.0, 1.0]))
            valid = box_ops.area(anchors) > 0
        else:
            valid = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= 1) & (anchors[:, 3] <= 1)
        return anchors, valid

    def predict(self, images: Tensor, true_image_shapes: Tensor | None = None) -> dict[str, Tensor]:
        out = self.feature_extractor.extract_proposal_features(images)
        features = [out] if isinstance(out, Tensor) else list(out)
        box_enc, objectness = self.rpn_head(features)
        h, w = int(images.shape[-2]), int(images.shape[-1])
        anchors, valid = self._anchors(features, h, w)
        pred = {
            "rpn_box_encodings": box_enc,
            "rpn_objectness_predictions_with_background": objectness,
            "anchors": anchors,
            "anchor_valid": valid,
            **{_feature_key(i): f for i, f in enumerate(features)},
            "preprocessed_shape": torch.tensor([h, w], dtype=torch.int64, device=images.device),
        }
        if not self.training:
            windows = self._windows(pred, true_image_shapes, images.shape[0])
            boxes, scores, num = self._proposals(pred, windows)
            pred.update(proposal_boxes=boxes, proposal_scores=scores, num_proposals=num)
            if self.cfg.number_of_stages > 1:
                pred.update(self._second_stage(features, boxes, (h, w)))
        return pred

    def forward(self, images: Tensor, true_image_shapes: Tensor | None = None) -> dict[str, Tensor]:
        if true_image_shapes is None:
            b, _, h, w = images.shape
            true_image_shapes = torch.tensor([h, w, 3], dtype=torch.int64, device=images.device).expand(b, 3)
        pred = self.predict(self.preprocess(images), true_image_shapes)
        return self.postprocess(pred, true_image_shapes)

    @staticmethod
    def _windows(pred: dict[str, Tensor], true_image_shapes: Tensor | None, batch: int) -> Tensor:
        """Normalized clip windows [B, 4] = (0, 0, true_h / H, true_w / W)."""
        hw = pred["preprocessed_shape"].to(torch.float32)
        if true_image_shapes is None:
            frac = torch.ones(batch, 2, device=hw.device)
        else:
            frac = (true_image_shapes[:, :2].to(hw.device).to(torch.float32) / hw).clamp(max=1.0)
        return torch.cat([torch.zeros_like(frac), frac], dim=1)

    def _proposals(self, pred: dict[str, Tensor], windows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """First-stage NMS -> boxes [B, P, 4] (normalized, clipped), scores [B, P], num [B] (zero padded)."""
        cfg = self.cfg
        with torch.no_grad():
            anchors = pred["anchors"].float()
            decoded = self.box_coder.decode(pred["rpn_box_encodings"].detach().float(), anchors.unsqueeze(0))
            scores = torch.softmax(pred["rpn_objectness_predictions_with_background"].detach().float(), -1)[
                ..., 1
            ]
            ok_in = pred["anchor_valid"].unsqueeze(0) & (scores > cfg.first_stage_nms_score_threshold)
            work = torch.where(ok_in, scores, torch.full_like(scores, NEG))
            p = cfg.first_stage_max_proposals
            # CPU: sync-free loop of P rounds; CUDA: exact NMS on a top-scored prefix (fewer kernels, one sync)
            loop = decoded.device.type != "cuda"
            idx, ok = greedy_nms_top_n(decoded, work, p, cfg.first_stage_nms_iou_threshold, always_loop=loop)
            boxes = torch.gather(decoded, 1, idx.unsqueeze(-1).expand(-1, -1, 4))
            top_scores = torch.gather(scores, 1, idx)
            boxes = box_ops.clip_to_window(boxes, windows.to(boxes.dtype))
            ok = ok & (box_ops.area(boxes) > 0)
            pos = torch.arange(p, device=ok.device).expand_as(ok)
            order = torch.where(ok, pos, pos + p).argsort(dim=1)  # keep score order, valid first
            ok = torch.gather(ok, 1, order)
            boxes = torch.gather(boxes, 1, order.unsqueeze(-1).expand(-1, -1, 4)) * ok.unsqueeze(-1)
            top_scores = torch.gather(top_scores, 1, order) * ok
        return boxes, top_scores, ok.sum(dim=1)

    # ------------------------------------------------------------------ second stage
    @property
    def predicts_masks(self) -> bool:
        return self.cfg.number_of_stages == 3 and self.mask_head is not None

    def _box_features(
        self, features: list[Tensor], boxes: Tensor, image_hw: tuple[int, int] | Tensor
    ) -> Tensor:
        size = self.cfg.initial_crop_size
        crops = multilevel_crop_and_resize(features, boxes.detach(), (size, size), image_hw)
        box_features = self.feature_extractor.extract_box_classifier_features(self.maxpool(crops))
        if box_features.dim() == 2:  # FPN box classifier (FC layers): the predictor's spatial mean is a no-op
            box_features = box_features[:, :, None, None]
        return box_features

    def _second_stage(
        self,
        features: list[Tensor],
        proposal_boxes: Tensor,
        image_hw: tuple[int, int] | Tensor,
        with_masks: bool = False,
    ) -> dict[str, Tensor]:
        b, p, _ = proposal_boxes.shape
        box_features = self._box_features(features, proposal_boxes, image_hw)
        refined, cls = self.box_predictor(box_features)
        out = {
            "refined_box_encodings": refined.view(b, p, refined.shape[1], refined.shape[2]),
            "class_predictions_with_background": cls.view(b, p, -1),
        }
        if with_masks and self.predicts_masks:
            masks = self.mask_head(box_features)
            out["mask_predictions"] = masks.view(b, p, *masks.shape[1:])
        return out

    def _gt_labels(self, groundtruth: dict[str, Tensor]) -> Tensor:
        from odkit.core.target_assigner import one_hot_labels

        return one_hot_labels(groundtruth["classes"], self.num_classes, True)

    def _sample_proposals(
        self, boxes: Tensor, scores: Tensor, num: Tensor, groundtruth: dict[str, Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """TF `_sample_box_classifier_batch`: second_stage_batch_size proposals per image, by score."""
        with torch.no_grad():
            b, p, _ = boxes.shape
            t = self._assign_to_groundtruth(boxes, groundtruth)
            valid = (torch.arange(p, device=boxes.device).unsqueeze(0) < num.unsqueeze(1)) & (
                t.cls_weights.mean(-1) > 0
            )
            positive = t.cls_targets.argmax(-1) > 0
            sampled = self.second_stage_sampler.subsample(valid, self.cfg.second_stage_batch_size, positive)
            s = min(self.cfg.second_stage_batch_size, p)
            key = torch.where(sampled, scores, torch.full_like(scores, -1.0))
            top, idx = key.topk(s, dim=1)
            keep = top >= 0
            out_boxes = torch.gather(boxes, 1, idx.unsqueeze(-1).expand(-1, -1, 4)) * keep.unsqueeze(-1)
            out_scores = torch.gather(scores, 1, idx) * keep
            out_num = keep.sum(1)  # topk is sorted: sampled proposals first, by score
        return out_boxes, out_scores, out_num

    # ------------------------------------------------------------------ losses
    def loss(
        self, prediction_dict: dict[str, Tensor], groundtruth: dict[str, Tensor], true_image_shapes: Tensor
    ) -> dict[str, Tensor]:
        pred = dict(prediction_dict)
        losses = self._rpn_loss(pred, groundtruth)
        if self.cfg.number_of_stages < 2:
            return losses
        if "class_predictions_with_background" not in pred:
            b = pred["rpn_box_encodings"].shape[0]
            windows = self._windows(pred, true_image_shapes, b)
            boxes, scores, num = self._proposals(pred, windows)
            if self.hard_example_miner is None:
                boxes, scores, num = self._sample_proposals(boxes, scores, num, groundtruth)
            pred.update(proposal_boxes=boxes, proposal_scores=scores, num_proposals=num)
            pred.update(
                self._second_stage(_features(pred), boxes, pred["preprocessed_shape"], with_masks=True)
            )
        losses.update(self._box_classifier_loss(pred, groundtruth))
        if "mask_predictions" in pred:
            losses["Loss/BoxClassifierLoss/mask_loss"] = self._mask_loss(pred, groundtruth)
        return losses

    def _rpn_loss(self, pred: dict[str, Tensor], groundtruth: dict[str, Tensor]) -> dict[str, Tensor]:
        cfg = self.cfg
        box_enc = pred["rpn_box_encodings"].float()
        obj = pred["rpn_objectness_predictions_with_background"].float()
        anchors = pred["anchors"].float()
        gt_classes = groundtruth["classes"]
        ones = torch.ones(*gt_classes.shape, 1, device=box_enc.device)
        with torch.no_grad():
            t = self.proposal_assigner.assign(
                anchors,
                groundtruth["boxes"].float(),
                gt_classes,
                groundtruth.get("weights"),
                groundtruth.get("num_boxes"),
                num_classes=1,
                add_background_class=False,
                gt_labels=ones,
            )
            valid = pred["anchor_valid"].unsqueeze(0)
            cls_targets = t.cls_targets[..., 0]
            cls_weights = t.cls_weights[..., 0] * valid
            sampled = self.first_stage_sampler.subsample(
                cls_weights > 0, cfg.first_stage_minibatch_size, cls_targets > 0
            ).to(box_enc.dtype)
            normalizer = sampled.sum(1).clamp(min=1.0)
            one_hot = F.one_hot(cls_targets.long(), 2).to(obj.dtype)
        loc = self.first_stage_loc_loss(box_enc, t.reg_targets, sampled * t.reg_weights * valid)
        objl = self.first_stage_obj_loss(obj, one_hot, sampled)
        loc_loss = (loc.sum(1) / normalizer).mean() * cfg.first_stage_localization_loss_weight
        obj_loss = (objl.sum(1) / normalizer).mean() * cfg.first_stage_objectness_loss_weight
        return {"Loss/RPNLoss/localization_loss": loc_loss, "Loss/RPNLoss/objectness_loss": obj_loss}

    def _box_classifier_loss(
        self, pred: dict[str, Tensor], groundtruth: dict[str, Tensor]
    ) -> dict[str, Tensor]:
        cfg = self.cfg
        boxes = pred["proposal_boxes"].float()
        num = pred["num_proposals"]
        refined = pred["refined_box_encodings"].float()
        cls_pred = pred["class_predictions_with_background"].float()
        b, p, q, code = refined.shape
        with torch.no_grad():
            t = self._assign_to_groundtruth(boxes, groundtruth)
            padding = (torch.arange(p, device=boxes.device).unsqueeze(0) < num.unsqueeze(1)).to(refined.dtype)
            normalizer = num.clamp(min=1).to(refined.dtype).unsqueeze(1) * b
        if q == 1:
            enc = refined[:, :, 0]
        else:
            with_bg = F.pad(refined, (0, 0, 1, 0))  # zero encoding for the background class
            target_class = t.cls_targets.argmax(-1)
            enc = torch.gather(with_bg, 2, target_class.view(b, p, 1, 1).expand(b, p, 1, code)).squeeze(2)
        loc = self.second_stage_loc_loss(enc, t.reg_targets, t.reg_weights) / normalizer
        cls = self.second_stage_cls_loss(cls_pred, t.cls_targets, t.cls_weights)
        if cls.dim() == 3:
            cls = cls.sum(-1)
        cls = cls / normalizer
        if self.hard_example_miner is not None:
            matches = torch.where(padding > 0, t.matches, torch.full_like(t.matches, -2))
            mined_boxes = torch.where(padding.unsqueeze(-1) > 0, boxes, torch.zeros_like(boxes))
            loc_loss, cls_loss = self.hard_example_miner(loc * padding, cls * padding, mined_boxes, matches)
        else:
            loc_loss, cls_loss = (loc * padding).sum(), (cls * padding).sum()
        return {
            "Loss/BoxClassifierLoss/localization_loss": loc_loss * cfg.second_stage_localization_loss_weight,
            "Loss/BoxClassifierLoss/classification_loss": cls_loss
            * cfg.second_stage_classification_loss_weight,
        }

    def _assign_to_groundtruth(self, boxes: Tensor, groundtruth: dict[str, Tensor]) -> Targets:
        """Second-stage targets of ``boxes`` [B, P, 4] (TF's detector target assigner)."""
        return self.detector_assigner.assign(
            boxes,
            groundtruth["boxes"].float(),
            groundtruth["classes"],
            groundtruth.get("weights"),
            groundtruth.get("num_boxes"),
            num_classes=self.num_classes,
        )

    def _mask_loss(self, pred: dict[str, Tensor], groundtruth: dict[str, Tensor]) -> Tensor:
        """TF `_loss_box_classifier` mask part (sigmoid cross entropy on cropped groundtruth masks)."""
        if "masks" not in groundtruth:
            raise ValueError("groundtruth instance masks are needed: set load_instance_masks: true")
        boxes = pred["proposal_boxes"].float()
        num = pred["num_proposals"]
        logits = pred["mask_predictions"].float()  # [B, P, q, mh, mw]
        b, p, q, mh, mw = logits.shape
        gt_masks = groundtruth["masks"]
        m = gt_masks.shape[1]
        with torch.no_grad():
            t = self._assign_to_groundtruth(boxes, groundtruth)
            padding = torch.arange(p, device=boxes.device).unsqueeze(0) < num.unsqueeze(1)
            weights = t.reg_weights * padding  # positives (times the groundtruth weight)
            matched = t.matches.clamp(min=0)
            rows = (torch.arange(b, device=boxes.device).unsqueeze(1) * m + matched).reshape(-1)
            flat = gt_masks.reshape(b * m, 1, *gt_masks.shape[2:]).float()
            if m == 0:
                targets = logits.new_zeros(b, p, mh, mw)
            else:
                targets = crop_and_resize(flat, boxes, (mh, mw), box_indices=rows).view(b, p, mh, mw)
        if q == 1:
            chosen = logits[:, :, 0]
        else:
            cls = (t.cls_targets.argmax(-1) - 1).clamp(min=0)  # background proposals weigh 0
            chosen = torch.gather(logits, 2, cls.view(b, p, 1, 1, 1).expand(b, p, 1, mh, mw)).squeeze(2)
        ce = F.binary_cross_entropy_with_logits(chosen, targets, reduction="none")
        total = (ce * weights.view(b, p, 1, 1)).sum()
        normalizer = (weights.sum() * mh * mw).clamp(min=1.0)
        return total / normalizer * self.cfg.second_stage_mask_prediction_loss_weight

    # ------------------------------------------------------------------ postprocess
    def postprocess(self, prediction_dict: dict[str, Tensor], true_image_shapes: Tensor) -> dict[str, Tensor]:
        pred = dict(prediction_dict)
        b = pred["rpn_box_encodings"].shape[0]
        windows = self._windows(pred, true_image_shapes, b)
        if "proposal_boxes" not in pred:
            boxes, scores, num = self._proposals(pred, windows)
            pred.update(proposal_boxes=boxes, proposal_scores=scores, num_proposals=num)
        if self.cfg.number_of_stages < 2:
            return self._postprocess_rpn(pred, windows)
        if "class_predictions_with_background" not in pred:
            pred.update(
                self._second_stage(_features(pred), pred["proposal_boxes"], pred["preprocessed_shape"])
            )
        proposals = pred["proposal_boxes"].float()
        num = pred["num_proposals"]
        refined = pred["refined_box_encodings"].float()
        b, p, q, _ = refined.shape
        boxes = self.box_coder.decode(refined, proposals.unsqueeze(2))  # [B, P, q, 4]
        raw_scores = self.score_converter(pred["class_predictions_with_background"].float())[..., 1:]
        valid = torch.arange(p, device=num.device).unsqueeze(0) < num.unsqueeze(1)
        scores = raw_scores * valid.unsqueeze(-1)
        nms_scores = torch.where(valid.unsqueeze(-1), scores, torch.full_like(scores, NEG))
        nms = self.second_stage_nms(boxes, nms_scores, windows)
        idx = nms.anchor_indices
        k = idx.shape[1]
        det_valid = torch.arange(k, device=idx.device).unsqueeze(0) < nms.num_detections.unsqueeze(1)
        multiclass = torch.gather(scores, 1, idx.unsqueeze(-1).expand(-1, -1, scores.shape[-1]))
        multiclass = multiclass * det_valid.unsqueeze(-1)
        if q == 1:
            raw = boxes[:, :, 0]
        else:
            top = scores.argmax(-1)
            raw = torch.gather(boxes, 2, top.view(b, p, 1, 1).expand(b, p, 1, 4)).squeeze(2)
        raw = box_ops.clip_to_window(
            box_ops.change_coordinate_frame(raw, windows), raw.new_tensor([0, 0, 1, 1])
        )
        extra = {}
        if self.predicts_masks:
            extra["detection_masks"] = self._detection_masks(pred, nms.boxes, nms.classes, det_valid, windows)
        return {
            **extra,
            "detection_boxes": nms.boxes,
            "detection_scores": nms.scores,
            "detection_classes": (nms.classes + 1.0) * det_valid,
            "num_detections": nms.num_detections.float(),
            "raw_detection_boxes": raw,
            "raw_detection_scores": raw_scores,  # TF: every proposal row, padding included
            "detection_multiclass_scores": multiclass,
        }

    def _detection_masks(
        self, pred: dict[str, Tensor], boxes: Tensor, classes: Tensor, valid: Tensor, windows: Tensor
    ) -> Tensor:
        """TF `_predict_third_stage` at inference: sigmoid masks [B, K, mh, mw] of the detected classes."""
        b, k, _ = boxes.shape
        # detection boxes are in the true-image frame; crop the padded feature map in its own frame
        hw = (windows[:, 2:4] - windows[:, 0:2]).unsqueeze(1)
        padded = boxes * hw.repeat(1, 1, 2) + windows[:, 0:2].repeat(1, 2).unsqueeze(1)
        features = self._box_features(_features(pred), padded, pred["preprocessed_shape"])
        logits = self.mask_head(features)  # [B*K, q, mh, mw]
        mh, mw = logits.shape[-2:]
        logits = logits.view(b, k, logits.shape[1], mh, mw)
        if logits.shape[2] > 1:
            idx = classes.long().clamp(0, logits.shape[2] - 1).view(b, k, 1, 1, 1).expand(b, k, 1, mh, mw)
            logits = torch.gather(logits, 2, idx)
        return torch.sigmoid(logits.squeeze(2).float()) * valid.view(b, k, 1, 1)

    def _postprocess_rpn(self, pred: dict[str, Tensor], windows: Tensor) -> dict[str, Tensor]:
        """number_of_stages 1: proposals are the detections (class 1), in the true image frame."""
        boxes = box_ops.change_coordinate_frame(pred["proposal_boxes"].float(), windows)
        num = pred["num_proposals"]
        valid = torch.arange(boxes.shape[1], device=num.device).unsqueeze(0) < num.unsqueeze(1)
        scores = pred["proposal_scores"].float()
        return {
            "detection_boxes": boxes * valid.unsqueeze(-1),
            "detection_scores": scores,
            "detection_classes": valid.float(),
            "num_detections": num.float(),
            "raw_detection_boxes": boxes,
            "raw_detection_scores": scores.unsqueeze(-1),
            "detection_multiclass_scores": scores.unsqueeze(-1),
        }
