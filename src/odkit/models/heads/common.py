"""Helpers shared by the box predictors."""

from __future__ import annotations

import torch


def flatten_level(x: torch.Tensor, code: int) -> torch.Tensor:
    """[B, A*code, H, W] -> [B, H*W*A, code] (TF anchor order: y, x, anchor)."""
    b = x.shape[0]
    return x.permute(0, 2, 3, 1).reshape(b, -1, code)
