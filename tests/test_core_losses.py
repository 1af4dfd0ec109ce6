"""Losses against hand-computed TF values."""

from __future__ import annotations

import math

import torch

from odkit.core import losses as L


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_smooth_l1_and_l2_and_l1():
    pred = torch.tensor([[[0.5, 2.0, 0.0, -3.0]]])
    target = torch.zeros(1, 1, 4)
    w = torch.tensor([[2.0]])
    # huber(delta=1): 0.125, 1.5, 0, 2.5 -> 4.125 * 2
    torch.testing.assert_close(L.WeightedSmoothL1LocalizationLoss()(pred, target, w), torch.tensor([[8.25]]))
    # TF l2 weights before squaring: 0.5 * (x * w)^2 -> 0.5 * 4 * (0.25 + 4 + 9)
    torch.testing.assert_close(L.WeightedL2LocalizationLoss()(pred, target, w), torch.tensor([[26.5]]))
    torch.testing.assert_close(L.L1LocalizationLoss()(pred, target, w), torch.tensor([[11.0]]))
    mask = torch.tensor([False])
    assert float(L.WeightedSmoothL1LocalizationLoss()(pred, target, w, losses_mask=mask).sum()) == 0.0
    nan_target = torch.tensor([[[float("nan"), 0.0, 0.0, 0.0]]])
    out = L.WeightedSmoothL1LocalizationLoss()(pred, nan_target, w, ignore_nan_targets=True)
    torch.testing.assert_close(out, torch.tensor([[8.0]]))


def test_iou_and_giou_losses():
    a = torch.tensor([[[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]]])
    b = torch.tensor([[[1.0, 1.0, 3.0, 3.0], [2.0, 0.0, 3.0, 1.0]]])
    w = torch.ones(1, 2)
    torch.testing.assert_close(L.WeightedIOULocalizationLoss()(a, b, w), torch.tensor([[1 - 1 / 7, 1.0]]))
    # giou: iou - (enclose - union) / enclose; pair 1: 1/7 - (9 - 7)/9; pair 2: 0 - (3 - 2)/3
    expected = torch.tensor([[1 - (1 / 7 - 2 / 9), 1 - (0 - 1 / 3)]])
    torch.testing.assert_close(L.WeightedGIOULocalizationLoss()(a, b, w), expected)


def test_sigmoid_and_focal():
    logits = torch.tensor([[[2.0, -1.0]]])
    target = torch.tensor([[[1.0, 0.0]]])
    w = torch.tensor([[0.5]])
    ce = [-math.log(_sig(2.0)), -math.log(1 - _sig(-1.0))]
    torch.testing.assert_close(
        L.WeightedSigmoidClassificationLoss()(logits, target, w), torch.tensor([[[0.5 * ce[0], 0.5 * ce[1]]]])
    )
    p0, p1 = _sig(2.0), _sig(-1.0)
    focal = [0.25 * (1 - p0) ** 2 * ce[0], 0.75 * p1**2 * ce[1]]
    out = L.SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)(logits, target, w)
    torch.testing.assert_close(out, 0.5 * torch.tensor([[focal]]))
    no_alpha = L.SigmoidFocalClassificationLoss(gamma=2.0, alpha=None)(logits, target, torch.ones(1, 1, 2))
    torch.testing.assert_close(no_alpha, torch.tensor([[[(1 - p0) ** 2 * ce[0], p1**2 * ce[1]]]]))


def test_softmax_with_logit_scale_and_bootstrap():
    logits = torch.tensor([[[2.0, 0.0, 0.0]]])
    target = torch.tensor([[[0.0, 1.0, 0.0]]])
    out = L.WeightedSoftmaxClassificationLoss(logit_scale=2.0)(logits, target, torch.tensor([[3.0]]))
    expected = 3.0 * -math.log(math.exp(0) / (math.exp(1) + 2))
    assert out.shape == (1, 1)
    assert float(out) == pytest_approx(expected)
    boot = L.BootstrappedSigmoidClassificationLoss(alpha=0.5, bootstrap_type="hard")
    logits2 = torch.tensor([[[3.0]]])
    t = 0.5 * 0.0 + 0.5 * 1.0  # hard: sigmoid(3) > 0.5
    expected2 = -(t * math.log(_sig(3.0)) + (1 - t) * math.log(1 - _sig(3.0)))
    assert float(boot(logits2, torch.zeros(1, 1, 1), torch.ones(1, 1))) == pytest_approx(expected2)


def pytest_approx(x: float):
    import pytest

    return pytest.approx(x, rel=1e-5)


def test_fused_focal_loss_matches_composite_expression_and_its_gradient(monkeypatch):
    """The chunked analytic focal loss equals the op-by-op expression (values and d/dlogits), in float64,
    for hard and soft targets, several gamma/alpha, per-anchor and per-class weights, across chunk edges."""
    import pytest

    monkeypatch.setattr(L, "_FOCAL_CHUNK", 37)  # many chunks and a ragged last one
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 50, 7, generator=gen, dtype=torch.float64) * 5.0)
    hard = (torch.rand(3, 50, 7, generator=gen) < 0.2).to(torch.float64)
    soft = torch.rand(3, 50, 7, generator=gen, dtype=torch.float64)
    for target in (hard, soft):
        for weights in (torch.rand(3, 50, generator=gen, dtype=torch.float64),
                        torch.rand(3, 50, 7, generator=gen, dtype=torch.float64)):
            for gamma, alpha in [(2.0, 0.25), (2.0, None), (0.0, 0.25), (1.0, None), (1.5, 0.75), (4.0, 0.5)]:
                loss = L.SigmoidFocalClassificationLoss(gamma=gamma, alpha=alpha)
                upstream = torch.rand(3, 50, 7, generator=gen, dtype=torch.float64)
                x1 = logits.clone().requires_grad_()
                fused = loss(x1, target, weights)
                (fused * upstream).sum().backward()
                x2 = logits.clone().requires_grad_()
                ref = loss._reference(x2, target, weights)
                (ref * upstream).sum().backward()
                assert fused.shape == ref.shape == (3, 50, 7)
                torch.testing.assert_close(fused, ref, rtol=1e-12, atol=1e-12)
                torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(AssertionError):  # the comparison has teeth: a different gamma differs
        torch.testing.assert_close(L.SigmoidFocalClassificationLoss(2.0)(logits, soft, weights),
                                   L.SigmoidFocalClassificationLoss(1.5)._reference(logits, soft, weights))


def test_cpu_float32_softplus_is_within_2e7_of_float64():
    """The focal loss's vectorised CPU softplus (Goldberg-corrected log1p) keeps float32 accuracy everywhere:
    large negative logits (log1p's regime, down to where the result leaves float32's normal range), around 0,
    large positive, and the infinities."""
    x = torch.cat([torch.linspace(-87.0, 104.0, 200_001), torch.tensor([0.0, -1e-8, 1e-8, 20.0, 89.0])])
    ref = torch.nn.functional.softplus(x.double())
    got = L.softplus(x)
    assert got.dtype == torch.float32
    rel = ((got.double() - ref).abs() / ref.clamp(min=1e-300)).max().item()
    assert rel < 2.5e-7, rel
    assert rel > 0 or not torch.equal(got, torch.nn.functional.softplus(x))  # a different, vectorised formula
    inf = L.softplus(torch.tensor([float("inf"), float("-inf"), float("nan")]))
    assert inf[0].item() == float("inf") and inf[1].item() == 0.0 and torch.isnan(inf[2])


def test_compiled_focal_kernels_match_the_eager_ones(monkeypatch):
    """`--compile` on the CPU: the torch.compile'd focal loss and gradient equal the eager kernels (float32, to
    float rounding) and the op-by-op expression (float64); skipped where torch.compile cannot build them."""
    import pytest

    monkeypatch.setattr(L, "_compiled_focal", None)
    why_not = L.compile_focal_kernels()
    if why_not is not None:
        pytest.skip(why_not)
    assert L._compiled_focal is not None
    gen = torch.Generator().manual_seed(1)
    target = (torch.rand(2, 300, 9, generator=gen) < 0.1).float()
    weights = torch.rand(2, 300, generator=gen)
    loss = L.SigmoidFocalClassificationLoss(gamma=2.0, alpha=0.25)
    for dtype, rtol in ((torch.float32, 2e-6), (torch.float64, 1e-10)):
        logits = torch.randn(2, 300, 9, generator=gen, dtype=dtype) * 5.0
        x1 = logits.clone().requires_grad_()
        compiled = loss(x1, target.to(dtype), weights.to(dtype))
        compiled.sum().backward()
        with monkeypatch.context() as m:
            m.setattr(L, "_compiled_focal", None)
            x2 = logits.clone().requires_grad_()
            eager = loss(x2, target.to(dtype), weights.to(dtype))
            eager.sum().backward()
        torch.testing.assert_close(compiled, eager, rtol=rtol, atol=rtol * 1e-3)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=rtol, atol=rtol * 1e-3)
        assert compiled.abs().sum() > 0 and x1.grad.abs().sum() > 0
