"""Exponential moving average of model weights (Optimizer.use_moving_average / moving_average_decay).

Like the TF OD API's EMA optimizer wrapper, the effective decay ramps up early in training:
``decay_t = min(decay, (1 + t) / (10 + t))`` with t the number of updates so far. All floating-point
parameters and buffers (e.g. batch-norm statistics) are averaged; integer buffers are copied.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


class ModelEMA:
    """Shadow copy of a model's state_dict, updated after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float = 0.9999) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"moving_average_decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        t = self.num_updates
        return min(self.decay, (1.0 + t) / (10.0 + t))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        floats_ema: list[torch.Tensor] = []
        floats_new: list[torch.Tensor] = []
        for k, v in model.state_dict().items():
            s = self.shadow[k]
            if s.is_floating_point():
                floats_ema.append(s)
                floats_new.append(v.detach().to(s.dtype))
            else:
                s.copy_(v)
        if floats_ema:
            torch._foreach_lerp_(floats_ema, floats_new, 1.0 - d)
        self.num_updates += 1

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: Mapping[str, torch.Tensor], num_updates: int) -> None:
        missing = [k for k in self.shadow if k not in state]
        if missing:
            raise KeyError(f"EMA state lacks {missing[0]!r}")
        for k, s in self.shadow.items():
            s.copy_(state[k].to(s.device, s.dtype))
        self.num_updates = int(num_updates)
