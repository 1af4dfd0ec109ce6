"""Learning-rate schedules of the TF OD API (optimizer.proto, utils/learning_schedules.py).

Each schedule is a plain function of the global step (the number of optimizer steps already taken,
so the first update uses step 0, as in TF). `build_learning_rate(LearningRate proto)` returns one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from odkit.errors import ConfigError

Schedule = Callable[[int], float]


def constant(learning_rate: float) -> Schedule:
    return lambda step: float(learning_rate)


def exponential_decay_with_burnin(
    learning_rate_base: float,
    decay_steps: int,
    decay_factor: float,
    burnin_learning_rate: float = 0.0,
    burnin_steps: int = 0,
    min_learning_rate: float = 0.0,
    staircase: bool = True,
) -> Schedule:
    """TF: burn-in rate (base if 0) for step < burnin_steps, then base * factor^((step-burnin)/decay_steps)."""
    if decay_steps <= 0:
        raise ConfigError("exponential_decay_learning_rate.decay_steps must be > 0", where="train_config.optimizer")
    burnin = burnin_learning_rate if burnin_learning_rate != 0 else learning_rate_base

    def rate(step: int) -> float:
        if step < burnin_steps:
            lr = burnin
        else:
            p = (step - burnin_steps) / decay_steps
            if staircase:
                p = math.floor(p)
            lr = learning_rate_base * decay_factor**p
        return max(lr, min_learning_rate)

    return rate


def cosine_decay_with_warmup(
    learning_rate_base: float,
    total_steps: int,
    warmup_learning_rate: float = 0.0,
    warmup_steps: int = 0,
    hold_base_rate_steps: int = 0,
) -> Schedule:
    """TF's cosine_decay_with_warmup: linear warm-up, optional hold, cosine to 0 at total_steps, 0 after."""
    where = "train_config.optimizer...cosine_decay_learning_rate"
    if learning_rate_base < warmup_learning_rate:
        raise ConfigError("learning_rate_base must be >= warmup_learning_rate", where=where)
    if total_steps < warmup_steps:
        raise ConfigError("total_steps must be >= warmup_steps", where=where)
    decay_len = float(total_steps - warmup_steps - hold_base_rate_steps)
    if decay_len <= 0:
        raise ConfigError("total_steps must be > warmup_steps + hold_base_rate_steps", where=where)

    def rate(step: int) -> float:
        if step > total_steps:
            return 0.0
        if warmup_steps > 0 and step < warmup_steps:
            slope = (learning_rate_base - warmup_learning_rate) / warmup_steps
            return slope * step + warmup_learning_rate
        if hold_base_rate_steps > 0 and step <= warmup_steps + hold_base_rate_steps:
            return float(learning_rate_base)
        t = (step - warmup_steps - hold_base_rate_steps) / decay_len
        return 0.5 * learning_rate_base * (1.0 + math.cos(math.pi * t))

    return rate


def manual_stepping(boundaries: Sequence[int], rates: Sequence[float], warmup: bool = False) -> Schedule:
    """TF's manual_stepping: rates[i] from boundaries[i-1]; with warmup, linear from rates[0] to rates[1]."""
    where = "train_config.optimizer...manual_step_learning_rate"
    bounds = [int(b) for b in boundaries]
    lrs = [float(r) for r in rates]
    if any(b < 0 for b in bounds):
        raise ConfigError("schedule steps must be positive integers", where=where)
    if any(nxt <= b for nxt, b in zip(bounds[1:], bounds[:-1])):
        raise ConfigError("schedule steps must be strictly increasing", where=where)
    if len(lrs) != len(bounds) + 1:
        raise ConfigError("need exactly one more learning rate than schedule steps", where=where)
    if bounds and bounds[0] == 0:
        raise ConfigError("the first schedule step cannot be 0", where=where)
    if warmup and bounds:
        slope = (lrs[1] - lrs[0]) / bounds[0]
        warm = list(range(bounds[0]))
        lrs = [lrs[0] + slope * s for s in warm] + lrs[1:]
        bounds = warm + bounds
    else:
        bounds = [0] + bounds

    def rate(step: int) -> float:
        idx = 0
        for i, b in enumerate(bounds):
            if step >= b:
                idx = i
        return lrs[idx]

    return rate


def build_learning_rate(lr_config: Any) -> Schedule:
    """`LearningRate` proto -> schedule (step -> learning rate)."""
    kind = lr_config.WhichOneof("learning_rate")
    if kind == "constant_learning_rate":
        return constant(lr_config.constant_learning_rate.learning_rate)
    if kind == "exponential_decay_learning_rate":
        c = lr_config.exponential_decay_learning_rate
        return exponential_decay_with_burnin(
            c.initial_learning_rate,
            c.decay_steps,
            c.decay_factor,
            burnin_learning_rate=getattr(c, "burnin_learning_rate", 0.0),
            burnin_steps=getattr(c, "burnin_steps", 0),
            min_learning_rate=getattr(c, "min_learning_rate", 0.0),
            staircase=c.staircase,
        )
    if kind == "manual_step_learning_rate":
        c = lr_config.manual_step_learning_rate
        if not c.schedule:
            raise ConfigError("manual_step_learning_rate has an empty schedule", where="train_config.optimizer")
        return manual_stepping(
            [s.step for s in c.schedule],
            [c.initial_learning_rate] + [s.learning_rate for s in c.schedule],
            warmup=c.warmup,
        )
    if kind == "cosine_decay_learning_rate":
        c = lr_config.cosine_decay_learning_rate
        return cosine_decay_with_warmup(
            c.learning_rate_base, c.total_steps, c.warmup_learning_rate, c.warmup_steps, c.hold_base_rate_steps
        )
    raise ConfigError(
        f"learning rate {kind or '(none set)'} is not supported",
        where="train_config.optimizer",
        hint="use constant_learning_rate, exponential_decay_learning_rate, manual_step_learning_rate "
        "or cosine_decay_learning_rate",
    )
