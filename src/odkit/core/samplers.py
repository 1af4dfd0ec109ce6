"""Example samplers and hard example mining, vectorised over the batch.

- `subsample_indicator(indicator [B, N] bool, num_samples [B] | int, generator=None) -> bool [B, N]`:
  uniformly random subset of at most num_samples True entries per row.
- `BalancedPositiveNegativeSampler(positive_fraction=0.5)` (TF `balanced_positive_negative_sampler`,
  dynamic version; the SSD `random_example_sampler`):
  `subsample(indicator [B, N], batch_size: int | None, labels [B, N]) -> bool [B, N]`. With a batch
  size, at most floor(positive_fraction * batch_size) positives and the rest negatives; with None,
  all positives and floor((1 - f) / f * num_positives) negatives.
- `HardExampleMiner(num_hard_examples=64, iou_threshold=0.7, loss_type='both', cls_loss_weight=0.05,
  loc_loss_weight=0.06, max_negatives_per_positive=None, min_negatives_per_image=0)` (TF
  `core/losses.py HardExampleMiner`): `__call__(location_losses [B, A], cls_losses [B, A],
  decoded_boxes [B, A, 4], matches [B, A]) -> (loc_loss, cls_loss)` summed over the selected anchors
  of all images; `last_num_positives` / `last_num_negatives` hold the selection counts [B].
  Greedy NMS stops after num_hard_examples picks (num_hard_examples rounds over [B, A]).
"""

from __future__ import annotations

import torch
from torch import Tensor

from odkit.core.post_processing import greedy_nms_top_n


def subsample_indicator(
    indicator: Tensor, num_samples: Tensor | int, generator: torch.Generator | None = None
) -> Tensor:
    """Random subset of at most `num_samples` (per row) True entries of `indicator` [B, N]."""
    b, n = indicator.shape
    if n == 0:
        return indicator.clone()
    keys = torch.rand((b, n), generator=generator, device=indicator.device if generator is None else "cpu")
    keys = keys.to(indicator.device)
    keys = torch.where(indicator, keys, torch.full_like(keys, 2.0))
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=indicator.device).expand(b, n))
    k = torch.as_tensor(num_samples, device=indicator.device).view(-1, 1)
    return indicator & (rank < k)


class BalancedPositiveNegativeSampler:
    def __init__(self, positive_fraction: float = 0.5) -> None:
        if not 0.0 < positive_fraction < 1.0 and positive_fraction != 1.0:
            raise ValueError(f"positive_fraction must be in (0, 1], got {positive_fraction}")
        self.positive_fraction = float(positive_fraction)

    def subsample(
        self,
        indicator: Tensor,
        batch_size: int | None,
        labels: Tensor,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        squeeze = indicator.dim() == 1
        if squeeze:
            indicator, labels = indicator.unsqueeze(0), labels.unsqueeze(0)
        indicator = indicator.to(torch.bool)
        labels = labels.to(torch.bool)
        positives = indicator & labels
        negatives = indicator & ~labels
        if batch_size is None:
            sampled_pos = positives
            num_pos = positives.sum(dim=1)
            ratio = (1.0 - self.positive_fraction) / self.positive_fraction
            max_neg = (ratio * num_pos.to(torch.float32)).floor().to(torch.int64)
        else:
            max_pos = int(self.positive_fraction * batch_size)
            sampled_pos = subsample_indicator(positives, max_pos, generator)
            max_neg = batch_size - sampled_pos.sum(dim=1)
        sampled = sampled_pos | subsample_indicator(negatives, max_neg, generator)
        return sampled[0] if squeeze else sampled


class HardExampleMiner:
    def __init__(
        self,
        num_hard_examples: int | None = 64,
        iou_threshold: float = 0.7,
        loss_type: str = "both",
        cls_loss_weight: float = 0.05,
        loc_loss_weight: float = 0.06,
        max_negatives_per_positive: float | None = None,
        min_negatives_per_image: int = 0,
    ) -> None:
        if loss_type not in ("both", "cls", "loc"):
            raise ValueError("loss_type must be 'both', 'cls' or 'loc'")
        self.num_hard_examples = num_hard_examples
        self.iou_threshold = float(iou_threshold)
        self.loss_type = loss_type
        self.cls_loss_weight = float(cls_loss_weight)
        self.loc_loss_weight = float(loc_loss_weight)
        self.max_negatives_per_positive = (
            float(max_negatives_per_positive) if max_negatives_per_positive is not None else None
        )
        self.min_negatives_per_image = int(min_negatives_per_image)
        self.last_num_positives: Tensor | None = None
        self.last_num_negatives: Tensor | None = None

    def select(
        self, location_losses: Tensor, cls_losses: Tensor, decoded_boxes: Tensor, matches: Tensor
    ) -> Tensor:
        """bool [B, A]: the anchors whose losses count."""
        b, a = cls_losses.shape
        with torch.no_grad():
            if self.loss_type == "cls":
                image_losses = cls_losses
            elif self.loss_type == "loc":
                image_losses = location_losses
            else:
                image_losses = cls_losses * self.cls_loss_weight + location_losses * self.loc_loss_weight
            num_hard = a if self.num_hard_examples is None else min(int(self.num_hard_examples), a)
            dense_anchor, dense_valid = greedy_nms_top_n(
                decoded_boxes, image_losses, num_hard, self.iou_threshold
            )
            m = torch.gather(matches, 1, dense_anchor)
            pos = dense_valid & (m >= 0)
            neg = dense_valid & (m == -1)
            if self.max_negatives_per_positive is not None:
                num_pos = pos.sum(1, keepdim=True)
                max_neg = torch.clamp(
                    (self.max_negatives_per_positive * num_pos.float()).to(torch.int64),
                    min=self.min_negatives_per_image,
                )
                neg = neg & (torch.cumsum(neg.to(torch.int64), 1) <= max_neg)
                chosen = pos | neg
            else:
                chosen = dense_valid
            self.last_num_positives = pos.sum(1)
            self.last_num_negatives = (neg & chosen).sum(1)
            selected = torch.zeros((b, a), dtype=torch.bool, device=cls_losses.device)
            rows = torch.arange(b, device=cls_losses.device).view(-1, 1).expand_as(dense_anchor)
            selected[rows[chosen], dense_anchor[chosen]] = True
        return selected

    def __call__(
        self, location_losses: Tensor, cls_losses: Tensor, decoded_boxes: Tensor, matches: Tensor
    ) -> tuple[Tensor, Tensor]:
        selected = self.select(location_losses, cls_losses, decoded_boxes, matches)
        sel = selected.to(location_losses.dtype)
        return (location_losses * sel).sum(), (cls_losses * sel).sum()
