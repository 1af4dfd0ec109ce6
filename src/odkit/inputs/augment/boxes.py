"""Ops that change boxes or labels only (TF OD API core/preprocessor.py semantics)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from odkit.inputs.augment.sample import Sample


def random_jitter_boxes(s: Sample, rng: random.Random, ratio: float = 0.05, jitter_mode: str = "default") -> Sample:
    """Move box sides by up to ratio * box size (TF jitter modes: default, expand, shrink, *_symmetric). Clipped."""
    n = s.boxes.shape[0]
    if n == 0:
        return s
    g = torch.Generator().manual_seed(rng.getrandbits(62))
    b = s.boxes
    h = (b[:, 2] - b[:, 0]).abs().clamp(min=1e-6)
    w = (b[:, 3] - b[:, 1]).abs().clamp(min=1e-6)
    lo, hi = {"expand": (0.0, ratio), "expand_symmetric": (0.0, ratio), "expand_symmetric_xy": (0.0, ratio),
              "shrink": (-ratio, 0.0), "shrink_symmetric": (-ratio, 0.0)}.get(jitter_mode, (-ratio, ratio))
    if jitter_mode in ("expand_symmetric", "shrink_symmetric", "expand_symmetric_xy"):
        cols = 1 if jitter_mode == "expand_symmetric_xy" else 2
        d = torch.rand((n, cols), generator=g) * (hi - lo) + lo
        dh, dw = d[:, 0], d[:, cols - 1]
        out = torch.stack([b[:, 0] - h * dh / 2, b[:, 1] - w * dw / 2, b[:, 2] + h * dh / 2, b[:, 3] + w * dw / 2], 1)
    else:
        d = torch.rand((n, 4), generator=g) * (hi - lo) + lo
        out = torch.stack([b[:, 0] - h * d[:, 0], b[:, 1] - w * d[:, 1], b[:, 2] + h * d[:, 2],
                           b[:, 3] + w * d[:, 3]], 1)
    out = out.clamp(0.0, 1.0)
    ymin = torch.minimum(out[:, 0], out[:, 2])
    ymax = torch.maximum(out[:, 0], out[:, 2])
    xmin = torch.minimum(out[:, 1], out[:, 3])
    xmax = torch.maximum(out[:, 1], out[:, 3])
    s.boxes = torch.stack([ymin, xmin, ymax, xmax], dim=1)
    return s


def remap_labels(s: Sample, rng: random.Random | None = None, original_labels: Sequence[int] = (),
                 new_label: int = 0) -> Sample:
    labels = s.fields["labels"]
    if len(original_labels):
        mask = torch.isin(labels, torch.tensor(list(original_labels), dtype=labels.dtype))
        s.fields["labels"] = torch.where(mask, torch.full_like(labels, new_label), labels)
    return s


def drop_label_probabilistically(s: Sample, rng: random.Random, dropped_label: int = 0,
                                 drop_probability: float = 0.0) -> Sample:
    """With drop_probability, remove every box of dropped_label."""
    if rng.random() < drop_probability:
        s.keep(s.fields["labels"] != dropped_label)
    return s
