"""SSD meta-architecture loss / postprocess semantics against hand-computed values."""

from __future__ import annotations

import math

import torch
from torch import nn

from odkit.core.anchors import MultiscaleGridAnchorGenerator
from odkit.core.box_coders import FasterRcnnBoxCoder
from odkit.core.losses import WeightedSigmoidClassificationLoss, WeightedSmoothL1LocalizationLoss
from odkit.core.matchers import ArgMaxMatcher
from odkit.core.post_processing import BatchNonMaxSuppression, ScoreConverter
from odkit.core.similarity import IouSimilarity
from odkit.core.target_assigner import TargetAssigner
from odkit.models.ssd import SSDLossConfig, SSDMetaArch
from odkit.models.ssd_targets import SSDTargetAssigner

ANCHORS = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.5, 0.5, 1.0]])


def _model(num_classes=2, add_bg=True, zeros=False, loss_config=None, nms=None):
    coder = FasterRcnnBoxCoder([10.0, 10.0, 5.0, 5.0])
    ta = TargetAssigner(IouSimilarity(), ArgMaxMatcher(0.5, 0.5), coder)
    return SSDMetaArch(
        num_classes=num_classes, feature_extractor=nn.Identity(), box_predictor=nn.Identity(),
        anchor_generator=MultiscaleGridAnchorGenerator(3, 3, 4.0, [1.0], 1), box_coder=coder,
        assign_targets=SSDTargetAssigner(ta, num_classes, add_bg, zeros),
        classification_loss=WeightedSigmoidClassificationLoss(), localization_loss=WeightedSmoothL1LocalizationLoss(),
        score_converter=ScoreConverter("SIGMOID"), nms_fn=nms or BatchNonMaxSuppression(0.1, 0.5, 5, 5),
        loss_config=loss_config, add_background_class=add_bg)


def _gt(boxes, classes):
    b = torch.tensor(boxes, dtype=torch.float32)
    c = torch.tensor(classes)
    return {"boxes": b, "classes": c, "weights": (c > 0).float(), "num_boxes": (c > 0).sum(1)}


def _pred(box_value=1.0, slots=3, batch=1):
    return {"box_encodings": torch.full((batch, 3, 4), box_value),
            "class_predictions_with_background": torch.zeros(batch, 3, slots),
            "anchors": ANCHORS, "preprocessed_shape": torch.tensor([64, 64])}


def test_loss_normalisation_and_weights():
    model = _model(loss_config=SSDLossConfig(classification_weight=2.0, localization_weight=3.0,
                                             normalize_loss_by_num_matches=True,
                                             normalize_loc_loss_by_codesize=True))
    gt = _gt([[[0.0, 0.0, 0.5, 0.5], [0, 0, 0, 0]]], [[2, 0]])
    losses = model.loss(_pred(), gt, torch.tensor([[64, 64, 3]]))
    # one match (anchor 0 == gt): smooth L1 of (1 - 0) = 0.5 per coordinate -> 2.0, / (1 match * code size 4)
    assert math.isclose(float(losses["Loss/localization_loss"]), 3.0 * 2.0 / 4.0, rel_tol=1e-5)
    # sigmoid CE at logit 0 = log 2 for all 3 anchors x 3 slots (weights 1), / 1 match
    assert math.isclose(float(losses["Loss/classification_loss"]), 2.0 * 9 * math.log(2.0), rel_tol=1e-5)


def test_loss_without_normalisation_and_two_images():
    model = _model(loss_config=SSDLossConfig(normalize_loss_by_num_matches=False))
    gt = _gt([[[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]], [[0.0, 0.5, 0.5, 1.0], [0, 0, 0, 0]]], [[1, 2], [2, 0]])
    losses = model.loss(_pred(batch=2), gt, torch.tensor([[64, 64, 3]] * 2))
    assert math.isclose(float(losses["Loss/localization_loss"]), 3 * 2.0, rel_tol=1e-5)  # 3 matches
    assert math.isclose(float(losses["Loss/classification_loss"]), 2 * 9 * math.log(2.0), rel_tol=1e-5)


def test_unmatched_class_label_semantics():
    gt = _gt([[[0.0, 0.0, 0.5, 0.5]]], [[2]])
    for zeros, expected_bg in ((False, 1.0), (True, 0.0)):
        ct, cw, rt, rw, m = _model(zeros=zeros).assign_targets(ANCHORS, gt)
        assert m.tolist() == [[0, -1, -1]]
        assert ct[0, 0].tolist() == [0.0, 0.0, 1.0]
        assert ct[0, 1].tolist() == [expected_bg, 0.0, 0.0]
        assert rw.tolist() == [[1.0, 0.0, 0.0]]
    ct, *_ = _model(add_bg=False, zeros=True).assign_targets(ANCHORS, gt)
    assert ct[0].tolist() == [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]


def test_postprocess_true_image_frame_and_one_based_classes():
    model = _model()
    pred = _pred(box_value=0.0)
    logits = torch.full((1, 3, 3), -10.0)
    logits[0, 0, 2] = 5.0  # anchor 0 -> label id 2
    logits[0, 1, 1] = 3.0  # anchor 1 -> label id 1
    pred["class_predictions_with_background"] = logits
    # the valid image is the top half of the 64x64 input: anchor 1 (bottom-right) falls outside and is dropped
    det = model.postprocess(pred, torch.tensor([[32, 64, 3]]))
    assert int(det["num_detections"][0]) == 1
    assert det["detection_classes"][0, :2].tolist() == [2.0, 0.0]
    # anchor 0 = [0, 0, .5, .5] of the input = [0, 0, 1, .5] of the true image
    assert torch.allclose(det["detection_boxes"][0, 0], torch.tensor([0.0, 0.0, 1.0, 0.5]), atol=1e-5)
    assert torch.allclose(det["raw_detection_boxes"][0, 0], torch.tensor([0.0, 0.0, 1.0, 0.5]), atol=1e-5)
    assert det["raw_detection_scores"].shape == (1, 3, 2)  # background column dropped
    assert math.isclose(float(det["detection_multiclass_scores"][0, 0, 1]), float(torch.sigmoid(torch.tensor(5.0))),
                        rel_tol=1e-5)
    assert float(det["detection_multiclass_scores"][0, 1].abs().sum()) == 0.0  # zero padded


def test_random_example_sampler_keeps_positives_and_ratio():
    from odkit.core.samplers import BalancedPositiveNegativeSampler
    from odkit.models.ssd_targets import SSDExampleSampler

    sample = SSDExampleSampler(BalancedPositiveNegativeSampler(positive_fraction=0.25), add_background_class=True)
    cls_targets = torch.zeros(2, 40, 3)
    cls_targets[..., 0] = 1.0  # background
    cls_targets[0, :4] = torch.tensor([0.0, 1.0, 0.0])  # 4 positives in image 0
    cls_targets[1, :2] = torch.tensor([0.0, 0.0, 1.0])  # 2 positives in image 1
    weights = torch.ones(2, 40)
    weights[0, 30:] = 0.0  # ignored anchors are never sampled
    ind = sample(cls_targets, weights)
    assert ind[0, :4].tolist() == [1.0] * 4 and ind[1, :2].tolist() == [1.0] * 2
    assert int(ind[0, 4:].sum()) == 12 and int(ind[1, 2:].sum()) == 6  # (1 - f) / f = 3 negatives per positive
    assert float(ind[0, 30:].sum()) == 0.0


def test_hard_example_mining_limits_negatives():
    from odkit.core.samplers import HardExampleMiner

    miner = HardExampleMiner(num_hard_examples=10, iou_threshold=0.99, loss_type="cls",
                             max_negatives_per_positive=3, min_negatives_per_image=0)
    model = _model(loss_config=SSDLossConfig(normalize_loss_by_num_matches=True))
    model.hard_example_miner = miner
    gt = _gt([[[0.0, 0.0, 0.5, 0.5]]], [[2]])
    pred = _pred()
    pred["class_predictions_with_background"] = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 0.0, 0.0], [-3.0, 0.0, 0.0]]])
    mined = model.loss(pred, gt, torch.tensor([[64, 64, 3]]))
    model.hard_example_miner = None
    full = model.loss(pred, gt, torch.tensor([[64, 64, 3]]))
    # with 1 positive and up to 3 negatives per positive every anchor is kept here: same loss
    assert torch.allclose(mined["Loss/classification_loss"], full["Loss/classification_loss"])
    miner.max_negatives_per_positive = 1
    model.hard_example_miner = miner
    mined1 = model.loss(pred, gt, torch.tensor([[64, 64, 3]]))
    # one negative per positive: only the negative anchor with the largest classification loss is kept
    ce = torch.nn.functional.binary_cross_entropy_with_logits
    t = torch.tensor([1.0, 0.0, 0.0])
    neg_losses = [float(ce(pred["class_predictions_with_background"][0, i], t, reduction="sum")) for i in (1, 2)]
    pos_loss = float(ce(pred["class_predictions_with_background"][0, 0], torch.tensor([0.0, 0.0, 1.0]),
                        reduction="sum"))
    assert math.isclose(float(mined1["Loss/classification_loss"]), pos_loss + max(neg_losses), rel_tol=1e-5)
