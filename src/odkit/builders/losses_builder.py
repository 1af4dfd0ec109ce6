"""`Loss` proto -> loss objects (TF OD API `losses_builder`).

`build(loss_config, where="loss") -> LossConfig(classification_loss, localization_loss,
classification_weight, localization_weight, hard_example_miner | None, random_example_sampler | None)`.
`build_faster_rcnn_classification_loss(classification_loss_config, where)` -> second-stage classification
loss (TF default: weighted softmax). `expected_loss_weights` other than NONE and a non-zero
`equalization_loss` are refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from odkit.core import losses
from odkit.core.samplers import BalancedPositiveNegativeSampler, HardExampleMiner
from odkit.errors import UnsupportedError


@dataclass
class LossConfig:
    classification_loss: losses.Loss
    localization_loss: losses.Loss
    classification_weight: float
    localization_weight: float
    hard_example_miner: HardExampleMiner | None
    random_example_sampler: BalancedPositiveNegativeSampler | None


def build_localization_loss(config, where: str = "loss.localization_loss") -> losses.Loss:
    kind = config.WhichOneof("localization_loss")
    if kind == "weighted_l2":
        return losses.WeightedL2LocalizationLoss()
    if kind == "weighted_smooth_l1":
        return losses.WeightedSmoothL1LocalizationLoss(config.weighted_smooth_l1.delta)
    if kind == "weighted_iou":
        return losses.WeightedIOULocalizationLoss()
    if kind == "weighted_giou":
        return losses.WeightedGIOULocalizationLoss()
    if kind == "l1_localization_loss":
        return losses.L1LocalizationLoss()
    raise UnsupportedError(
        f"localization loss {kind or '(empty)'} is not supported",
        where=where,
        hint="use weighted_smooth_l1, weighted_l2, weighted_iou, weighted_giou or l1_localization_loss",
    )


def build_classification_loss(config, where: str = "loss.classification_loss") -> losses.Loss:
    kind = config.WhichOneof("classification_loss")
    if kind == "weighted_sigmoid":
        return losses.WeightedSigmoidClassificationLoss()
    if kind == "weighted_sigmoid_focal":
        c = config.weighted_sigmoid_focal
        return losses.SigmoidFocalClassificationLoss(
            gamma=c.gamma, alpha=c.alpha if c.HasField("alpha") else None
        )
    if kind == "weighted_softmax":
        return losses.WeightedSoftmaxClassificationLoss(config.weighted_softmax.logit_scale)
    if kind == "bootstrapped_sigmoid":
        c = config.bootstrapped_sigmoid
        return losses.BootstrappedSigmoidClassificationLoss(
            alpha=c.alpha, bootstrap_type="hard" if c.hard_bootstrap else "soft"
        )
    if kind == "penalty_reduced_logistic_focal_loss":
        c = config.penalty_reduced_logistic_focal_loss
        return losses.PenaltyReducedLogisticFocalLoss(alpha=c.alpha, beta=c.beta)
    raise UnsupportedError(
        f"classification loss {kind or '(empty)'} is not supported",
        where=where,
        hint="use weighted_sigmoid_focal, weighted_sigmoid, weighted_softmax or bootstrapped_sigmoid",
    )


def build_faster_rcnn_classification_loss(
    config, where: str = "second_stage_classification_loss"
) -> losses.Loss:
    """TF `build_faster_rcnn_classification_loss`: unset -> weighted softmax."""
    kind = config.WhichOneof("classification_loss")
    if kind is None:
        return losses.WeightedSoftmaxClassificationLoss()
    if kind in ("weighted_sigmoid", "weighted_sigmoid_focal", "weighted_softmax"):
        return build_classification_loss(config, where)
    raise UnsupportedError(
        f"{kind} is not supported as the Faster R-CNN second stage classification loss",
        where=where,
        hint="use weighted_softmax, weighted_sigmoid or weighted_sigmoid_focal",
    )


def build_hard_example_miner(
    config, classification_weight: float, localization_weight: float
) -> HardExampleMiner:
    loss_type = {0: "both", 1: "cls", 2: "loc"}[int(config.loss_type)]
    return HardExampleMiner(
        num_hard_examples=config.num_hard_examples if config.num_hard_examples > 0 else None,
        iou_threshold=config.iou_threshold,
        loss_type=loss_type,
        cls_loss_weight=classification_weight,
        loc_loss_weight=localization_weight,
        max_negatives_per_positive=(
            config.max_negatives_per_positive if config.max_negatives_per_positive > 0 else None
        ),
        min_negatives_per_image=config.min_negatives_per_image,
    )


def build(config, where: str = "loss") -> LossConfig:
    if int(config.expected_loss_weights) != 0:
        raise UnsupportedError(
            "expected_loss_weights is not supported",
            where=f"{where}.expected_loss_weights",
            hint="remove it (NONE)",
        )
    if config.HasField("equalization_loss") and config.equalization_loss.weight != 0:
        raise UnsupportedError(
            "equalization_loss is not supported", where=f"{where}.equalization_loss", hint="remove it"
        )
    cls_w = float(config.classification_weight)
    loc_w = float(config.localization_weight)
    miner = None
    if config.HasField("hard_example_miner"):
        miner = build_hard_example_miner(config.hard_example_miner, cls_w, loc_w)
    sampler = None
    if config.HasField("random_example_sampler"):
        f = config.random_example_sampler.positive_sample_fraction
        if not 0.0 < f <= 1.0:
            raise UnsupportedError(
                f"positive_sample_fraction must be in (0, 1], got {f}",
                where=f"{where}.random_example_sampler.positive_sample_fraction",
            )
        sampler = BalancedPositiveNegativeSampler(positive_fraction=f)
    return LossConfig(
        classification_loss=build_classification_loss(
            config.classification_loss, f"{where}.classification_loss"
        ),
        localization_loss=build_localization_loss(config.localization_loss, f"{where}.localization_loss"),
        classification_weight=cls_w,
        localization_weight=loc_w,
        hard_example_miner=miner,
        random_example_sampler=sampler,
    )
