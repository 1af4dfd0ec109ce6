"""Optimizers of optimizer.proto with TF1 update rules, plus gradient clipping.

- momentum_optimizer: tf.train.MomentumOptimizer == torch SGD (accum = m*accum + g; w -= lr*accum).
- adam_optimizer: torch Adam with beta1=0.9, beta2=0.999 and the config's epsilon (TF applies epsilon
  after bias correction of the step size, "epsilon hat"; the difference is negligible at eps << sqrt(v)).
- rms_prop_optimizer: `TFRMSprop` (tf.train.RMSPropOptimizer): decay is the mean-square discount,
  epsilon sits inside the square root, the learning rate is applied inside the momentum accumulator,
  and the mean square starts at 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from odkit.errors import ConfigError
from odkit.training.schedules import Schedule, build_learning_rate


class TFRMSprop(Optimizer):
    """tf.train.RMSPropOptimizer: ms = d*ms + (1-d)*g^2; mom = m*mom + lr*g/sqrt(ms+eps); w -= mom."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.01,
        decay: float = 0.9,
        momentum: float = 0.9,
        epsilon: float = 1.0,
    ) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"RMSProp decay must be in [0, 1], got {decay}")
        super().__init__(params, {"lr": lr, "decay": decay, "momentum": momentum, "epsilon": epsilon})

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, rho, mom_v, eps = group["lr"], group["decay"], group["momentum"], group["epsilon"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if not state:
                    state["ms"] = torch.ones_like(p, memory_format=torch.preserve_format)
                    state["mom"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                ms, mom = state["ms"], state["mom"]
                ms.mul_(rho).addcmul_(g, g, value=1.0 - rho)
                mom.mul_(mom_v).addcdiv_(g, (ms + eps).sqrt_(), value=lr)
                p.sub_(mom)
        return loss


def build_optimizer(optimizer_config: Any, params: Iterable[Any]) -> tuple[Optimizer, Schedule]:
    """`Optimizer` proto + parameters -> (torch optimizer, learning-rate schedule)."""
    kind = optimizer_config.WhichOneof("optimizer")
    params = list(params)
    if not params:
        raise ConfigError(
            "no trainable parameters left",
            where="train_config.freeze_variables / update_trainable_variables",
            hint="loosen the regexes",
        )
    if kind == "momentum_optimizer":
        c = optimizer_config.momentum_optimizer
        momentum = float(c.momentum_optimizer_value)  # read before the schedule, which may refuse its values
        schedule = build_learning_rate(c.learning_rate)
        # foreach: one multi-tensor kernel per update op instead of a Python loop over parameters (torch picks
        # it by default only for CUDA); the same ops in the same order, so the same numbers as the loop
        opt: Optimizer = torch.optim.SGD(params, lr=schedule(0), momentum=momentum, foreach=True)
    elif kind == "adam_optimizer":
        c = optimizer_config.adam_optimizer
        eps = float(c.epsilon)
        schedule = build_learning_rate(c.learning_rate)
        opt = torch.optim.Adam(params, lr=schedule(0), betas=(0.9, 0.999), eps=eps, foreach=True)
    elif kind == "rms_prop_optimizer":
        c = optimizer_config.rms_prop_optimizer
        decay, momentum, eps = float(c.decay), float(c.momentum_optimizer_value), float(c.epsilon)
        schedule = build_learning_rate(c.learning_rate)
        opt = TFRMSprop(params, lr=schedule(0), decay=decay, momentum=momentum, epsilon=eps)
    else:
        raise ConfigError(
            f"optimizer {kind or '(none set)'} is not supported",
            where="train_config.optimizer",
            hint="use momentum_optimizer, adam_optimizer or rms_prop_optimizer",
        )
    return opt, schedule


def set_learning_rate(optimizer: Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
