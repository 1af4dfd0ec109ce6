"""A training run's first batches must hold groundtruth boxes (a label map that matches no record's class text
would otherwise train on nothing)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from odkit.errors import DataError


class BoxCheck:
    """Counts groundtruth boxes per class in the first ``num_batches`` batches of a run.

    Zero boxes in all of them is an error (a label map whose names match no record's class text, an empty
    label map, records without boxes); a class without boxes is a warning.
    """

    def __init__(self, num_classes: int, num_batches: int = 10) -> None:
        self.num_classes = int(num_classes)
        self.num_batches = num_batches
        self.seen = 0
        self.images = 0
        self.per_class = torch.zeros(max(self.num_classes, 0) + 1, dtype=torch.long)

    @property
    def done(self) -> bool:
        return self.seen >= self.num_batches

    def add(self, batch: dict[str, Any], log: Callable[[str], None], final: bool = False) -> None:
        gt = batch.get("groundtruth") if isinstance(batch, dict) else None
        if not isinstance(gt, dict) or "classes" not in gt or "num_boxes" not in gt:
            self.seen = self.num_batches  # a loader without groundtruth (test fakes): nothing to check
            return
        classes = gt["classes"].detach().to("cpu").reshape(-1).long()
        classes = classes[(classes > 0) & (classes <= self.num_classes)]
        self.per_class += torch.bincount(classes, minlength=self.per_class.numel())[: self.per_class.numel()]
        self.images += int(gt["num_boxes"].numel())
        self.seen += 1
        if self.done or final:
            self.verdict(log)

    def verdict(self, log: Callable[[str], None]) -> None:
        if int(self.per_class[1:].sum()) == 0:
            raise DataError(
                f"the first {self.seen} training batches ({self.images} images) hold 0 boxes; training would "
                "learn nothing",
                where="train_input_reader",
                hint="check that label_map_path's names match the records' image/object/class/text "
                     "(`odkit records inspect`), and that the records have boxes",
            )
        empty = [str(i) for i in range(1, self.num_classes + 1) if int(self.per_class[i]) == 0]
        if empty:
            log(f"warning: class id(s) {', '.join(empty[:20])}{' ...' if len(empty) > 20 else ''} have no boxes "
                f"in the first {self.seen} batches")
