"""LR schedules and optimizers against the TF OD API formulas (utils/learning_schedules.py)."""

from __future__ import annotations

import math

import pytest
import torch
from google.protobuf import text_format

from odkit.errors import ConfigError
from odkit.protos import optimizer_pb2
from odkit.training import schedules as S
from odkit.training.optimizers import TFRMSprop, build_optimizer


def _lr(text: str) -> S.Schedule:
    msg = text_format.Parse(text, optimizer_pb2.LearningRate())
    return S.build_learning_rate(msg)


def test_constant() -> None:
    f = _lr("constant_learning_rate { learning_rate: 0.004 }")
    assert f(0) == pytest.approx(0.004) and f(10**6) == pytest.approx(0.004)


def test_exponential_decay_staircase_burnin_min() -> None:
    f = _lr(
        "exponential_decay_learning_rate { initial_learning_rate: 0.1 decay_steps: 10 decay_factor: 0.5 "
        "burnin_learning_rate: 0.01 burnin_steps: 5 min_learning_rate: 0.02 }"
    )
    # steps < burnin: burnin rate, but never below min_learning_rate (tf.maximum over both branches)
    assert f(0) == pytest.approx(0.02) and f(4) == pytest.approx(0.02)
    assert f(5) == pytest.approx(0.1)  # decay counts from the end of burn-in
    assert f(14) == pytest.approx(0.1)
    assert f(15) == pytest.approx(0.05)
    assert f(25) == pytest.approx(0.025)
    assert f(35) == pytest.approx(0.02)  # 0.0125 clipped to min


def test_exponential_decay_smooth_and_zero_burnin() -> None:
    f = _lr(
        "exponential_decay_learning_rate { initial_learning_rate: 0.1 decay_steps: 10 decay_factor: 0.5 "
        "staircase: false burnin_steps: 3 }"
    )
    assert f(1) == pytest.approx(0.1)  # burnin_learning_rate 0 -> base
    assert f(8) == pytest.approx(0.1 * 0.5**0.5)


def test_manual_step_without_and_with_warmup() -> None:
    text = (
        "manual_step_learning_rate { initial_learning_rate: 0.1 schedule { step: 5 learning_rate: 0.01 } "
        "schedule { step: 10 learning_rate: 0.001 } %s }"
    )
    f = _lr(text % "")
    assert [f(s) for s in (0, 4, 5, 9, 10, 100)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    g = _lr(text % "warmup: true")
    # linear from 0.1 towards 0.01 over [0, 5): rate = 0.1 + (0.01 - 0.1) / 5 * step
    assert [g(s) for s in (0, 1, 4)] == pytest.approx([0.1, 0.082, 0.028])
    assert g(5) == pytest.approx(0.01) and g(10) == pytest.approx(0.001)


def test_manual_step_errors() -> None:
    with pytest.raises(ConfigError, match="empty schedule"):
        _lr("manual_step_learning_rate { initial_learning_rate: 0.1 }")
    with pytest.raises(ConfigError, match="strictly increasing"):
        _lr("manual_step_learning_rate { schedule { step: 5 } schedule { step: 5 } }")
    with pytest.raises(ConfigError, match="cannot be 0"):
        _lr("manual_step_learning_rate { schedule { step: 0 } }")


def test_cosine_decay_with_warmup_and_hold() -> None:
    base, total, wlr, wsteps, hold = 0.04, 100, 0.01, 10, 20
    f = _lr(
        f"cosine_decay_learning_rate {{ learning_rate_base: {base} total_steps: {total} "
        f"warmup_learning_rate: {wlr} warmup_steps: {wsteps} hold_base_rate_steps: {hold} }}"
    )

    def tf(step: int) -> float:
        lr = 0.5 * base * (1 + math.cos(math.pi * (step - wsteps - hold) / (total - wsteps - hold)))
        if step <= wsteps + hold:
            lr = base
        if step < wsteps:
            lr = (base - wlr) / wsteps * step + wlr
        return 0.0 if step > total else lr

    for step in (0, 5, 9, 10, 25, 30, 31, 60, 99, 100, 101, 1000):
        assert f(step) == pytest.approx(tf(step), rel=1e-6, abs=1e-9), step
    assert f(5) == pytest.approx(0.025)
    assert f(65) == pytest.approx(0.02)  # halfway through the cosine part
    assert f(101) == 0.0


def test_cosine_errors() -> None:
    with pytest.raises(ConfigError, match="warmup_learning_rate"):
        _lr("cosine_decay_learning_rate { learning_rate_base: 0.01 warmup_learning_rate: 0.1 }")
    with pytest.raises(ConfigError, match="total_steps must be >= warmup_steps"):
        _lr("cosine_decay_learning_rate { total_steps: 5 warmup_steps: 10 }")


def test_unset_learning_rate_is_config_error() -> None:
    with pytest.raises(ConfigError, match="not supported"):
        S.build_learning_rate(optimizer_pb2.LearningRate())


def _opt(text: str) -> torch.optim.Optimizer:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt, _ = build_optimizer(text_format.Parse(text, optimizer_pb2.Optimizer()), [w])
    return opt


def test_tf_rmsprop_update_rule() -> None:
    w = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = TFRMSprop([w], lr=0.1, decay=0.9, momentum=0.5, epsilon=1.0)
    g = torch.tensor([0.5, 2.0])
    ms = torch.ones(2)
    mom = torch.zeros(2)
    ref = w.detach().clone()
    for _ in range(3):
        w.grad = g.clone()
        opt.step()
        ms = 0.9 * ms + 0.1 * g * g
        mom = 0.5 * mom + 0.1 * g / torch.sqrt(ms + 1.0)
        ref = ref - mom
    assert torch.allclose(w.detach(), ref, atol=1e-7)


def test_build_optimizer_kinds() -> None:
    lr = "learning_rate { constant_learning_rate { learning_rate: 0.5 } }"
    sgd = _opt(f"momentum_optimizer {{ {lr} momentum_optimizer_value: 0.8 }}")
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["momentum"] == pytest.approx(0.8)
    assert sgd.param_groups[0]["lr"] == pytest.approx(0.5)
    adam = _opt(f"adam_optimizer {{ {lr} epsilon: 1e-7 }}")
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["eps"] == pytest.approx(1e-7)
    rms = _opt(f"rms_prop_optimizer {{ {lr} decay: 0.95 epsilon: 0.5 }}")
    assert isinstance(rms, TFRMSprop) and rms.param_groups[0]["decay"] == pytest.approx(0.95)
    with pytest.raises(ConfigError, match="optimizer"):
        _opt("use_moving_average: false")


def test_momentum_matches_tf_rule() -> None:
    # TF MomentumOptimizer: accum = m * accum + g; w -= lr * accum
    w = torch.nn.Parameter(torch.tensor([1.0]))
    opt, _ = build_optimizer(
        text_format.Parse(
            "momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.1 } } "
            "momentum_optimizer_value: 0.9 }",
            optimizer_pb2.Optimizer(),
        ),
        [w],
    )
    for _ in range(2):
        w.grad = torch.tensor([1.0])
        opt.step()
    # accum: 1, then 1.9 -> w = 1 - 0.1 - 0.19
    assert w.item() == pytest.approx(0.71)


@pytest.mark.parametrize("kind", ["momentum_optimizer", "adam_optimizer"])
def test_built_optimizers_use_foreach_with_the_loop_numbers(kind: str) -> None:
    # build_optimizer asks for the multi-tensor (foreach) update on CPU too: bitwise the per-parameter loop
    gen = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (7,), (2, 3, 5), ()]
    init = [torch.randn(s, generator=gen) for s in shapes]
    grads = [[torch.randn(s, generator=gen) for s in shapes] for _ in range(4)]
    a = [torch.nn.Parameter(x.clone()) for x in init]
    b = [torch.nn.Parameter(x.clone()) for x in init]
    value = "momentum_optimizer_value: 0.9" if kind == "momentum_optimizer" else "epsilon: 1e-7"
    opt, _ = build_optimizer(text_format.Parse(
        f"{kind} {{ learning_rate {{ constant_learning_rate {{ learning_rate: 0.1 }} }} {value} }}",
        optimizer_pb2.Optimizer()), a)
    assert opt.param_groups[0]["foreach"] is True
    ref = (torch.optim.SGD(b, lr=0.1, momentum=0.9, foreach=False) if kind == "momentum_optimizer"
           else torch.optim.Adam(b, lr=0.1, eps=1e-7, foreach=False))
    for i, gs in enumerate(grads):
        for o in (opt, ref):
            o.param_groups[0]["lr"] = 0.1 / (i + 1)
        for pa, pb, g in zip(a, b, gs):
            pa.grad, pb.grad = g.clone(), g.clone()
        opt.step()
        ref.step()
    for pa, pb in zip(a, b):
        assert not torch.equal(pa, torch.zeros_like(pa))
        assert torch.equal(pa, pb)
