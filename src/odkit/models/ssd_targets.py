"""SSD target assignment and example sampling glue over `odkit.core` (TF `SSDMetaArch` semantics).

`SSDTargetAssigner(target_assigner, num_classes, add_background_class, encode_background_as_zeros)` is the
`assign_targets(anchors, groundtruth)` callable of `SSDMetaArch`; it applies TF's unmatched class label:
background column 1 for unmatched anchors unless encode_background_as_zeros (then all zeros).
`SSDExampleSampler(sampler, add_background_class)` is the `sample_fn` for `random_example_sampler`.
"""

from __future__ import annotations

import torch


class SSDTargetAssigner:
    def __init__(self, target_assigner, num_classes: int, add_background_class: bool = True,
                 encode_background_as_zeros: bool = False) -> None:
        self.target_assigner = target_assigner
        self.num_classes = num_classes
        self.add_background_class = add_background_class
        self.encode_background_as_zeros = encode_background_as_zeros

    def __call__(self, anchors: torch.Tensor, groundtruth: dict[str, torch.Tensor]):
        boxes = groundtruth["boxes"].to(anchors.dtype)
        classes = groundtruth["classes"]
        weights = groundtruth.get("weights")
        if weights is None:
            weights = (classes > 0).to(boxes.dtype)
        t = self.target_assigner.assign(
            anchors, boxes, classes, weights.to(boxes.dtype), groundtruth.get("num_boxes"),
            num_classes=self.num_classes, add_background_class=self.add_background_class)
        cls_targets = t.cls_targets
        if self.add_background_class and self.encode_background_as_zeros:
            keep = torch.ones(cls_targets.shape[-1], device=cls_targets.device, dtype=cls_targets.dtype)
            keep[0] = 0.0
            cls_targets = cls_targets * keep
        elif not self.add_background_class and not self.encode_background_as_zeros:
            # TF: unmatched label is [1] + (num_classes - 1) * [0] in this (unusual) combination
            first = (t.matches < 0).to(cls_targets.dtype)
            cls_targets = torch.cat([torch.maximum(cls_targets[..., :1], first.unsqueeze(-1)), cls_targets[..., 1:]],
                                    dim=-1)
        return cls_targets, t.cls_weights, t.reg_targets, t.reg_weights, t.matches


class SSDExampleSampler:
    """TF `_minibatch_subsample_fn`: keep all positives, sample negatives by positive_fraction."""

    def __init__(self, sampler, add_background_class: bool = True) -> None:
        self.sampler = sampler
        self.add_background_class = add_background_class

    def __call__(self, cls_targets: torch.Tensor, cls_weights: torch.Tensor) -> torch.Tensor:
        fg = cls_targets[..., 1:] if self.add_background_class else cls_targets
        positives = fg.sum(dim=-1) > 0
        return self.sampler.subsample(cls_weights > 0, None, positives).to(cls_targets.dtype)
