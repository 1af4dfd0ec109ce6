"""Losses with TF OD API semantics (`core/losses.py`), unreduced.

Call: `loss(prediction [B, A, K], target [B, A, K], weights, ignore_nan_targets=False, losses_mask=None)`.
`losses_mask` bool [B] zeroes whole images; `ignore_nan_targets` replaces NaN targets by the prediction.

Localization (weights [B, A]) -> [B, A]:
- `WeightedL2LocalizationLoss`: sum_k 0.5 * ((pred - target) * w)^2 (TF weights before squaring).
- `WeightedSmoothL1LocalizationLoss(delta=1.0)`: sum_k huber(pred - target, delta) * w.
- `L1LocalizationLoss`: sum_k |pred - target| * w.
- `WeightedIOULocalizationLoss` / `WeightedGIOULocalizationLoss`: (1 - IoU / GIoU) * w; inputs are
  decoded boxes `[ymin, xmin, ymax, xmax]`.
Classification (weights [B, A] or [B, A, K]):
- `WeightedSigmoidClassificationLoss` -> [B, A, K].
- `SigmoidFocalClassificationLoss(gamma=2.0, alpha=None)` -> [B, A, K] (alpha None = no alpha weighting).
- `WeightedSoftmaxClassificationLoss(logit_scale=1.0)` -> [B, A] (class weights averaged, like TF).
- `BootstrappedSigmoidClassificationLoss(alpha, bootstrap_type='soft'|'hard')` -> [B, A, K].
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import Tensor

from odkit.core import box_ops


class Loss:
    """Base: NaN-target handling and per-image mask, then `_compute`."""

    is_localization = False

    def __call__(
        self,
        prediction: Tensor,
        target: Tensor,
        weights: Tensor,
        ignore_nan_targets: bool = False,
        losses_mask: Tensor | None = None,
    ) -> Tensor:
        if ignore_nan_targets:
            target = torch.where(torch.isnan(target), prediction.detach(), target)
        if losses_mask is not None:
            shape = (-1,) + (1,) * (weights.dim() - 1)
            weights = weights * losses_mask.to(weights.dtype).view(shape)
        return self._compute(prediction, target, weights)

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        raise NotImplementedError


def _class_weights(weights: Tensor, like: Tensor) -> Tensor:
    return weights.unsqueeze(-1) if weights.dim() == like.dim() - 1 else weights


class WeightedL2LocalizationLoss(Loss):
    is_localization = True

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        diff = (prediction - target) * weights.unsqueeze(-1)
        return (0.5 * diff * diff).sum(-1)


class WeightedSmoothL1LocalizationLoss(Loss):
    is_localization = True

    def __init__(self, delta: float = 1.0) -> None:
        self.delta = float(delta)

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        loss = F.huber_loss(prediction, target, reduction="none", delta=self.delta)
        return (loss * weights.unsqueeze(-1)).sum(-1)


class L1LocalizationLoss(Loss):
    is_localization = True

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        return ((prediction - target).abs() * weights.unsqueeze(-1)).sum(-1)


class WeightedIOULocalizationLoss(Loss):
    is_localization = True

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        return (1.0 - box_ops.matched_iou(prediction, target)) * weights


class WeightedGIOULocalizationLoss(Loss):
    is_localization = True

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        return (1.0 - box_ops.matched_giou(prediction, target)) * weights


class WeightedSigmoidClassificationLoss(Loss):
    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        ce = F.binary_cross_entropy_with_logits(prediction, target, reduction="none")
        return ce * _class_weights(weights, ce)


# Elements per chunk of the fused focal loss on CPU: temporaries of this size stay in cache and reuse memory
# instead of allocating (and page-faulting) several full [B, A, K] tensors per step.
_FOCAL_CHUNK = 1 << 16


def softplus(x: Tensor) -> Tensor:
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)) (TF's sigmoid_cross_entropy_with_logits form).

    On CPU float32, log1p(e) is computed as log(1 + e) * e / ((1 + e) - 1) (Goldberg's correction, exact to
    ~1 ulp; e itself where 1 + e rounds to 1): ATen's CPU log1p is not vectorised and took 13% of an FPN-lite
    320 training step at 1 thread, log and exp are. Within 2e-7 relative of F.softplus; F.softplus elsewhere.
    """
    if x.device.type != "cpu" or x.dtype != torch.float32:
        return F.softplus(x)
    e = torch.abs(x).neg_().exp_()
    u = e + 1.0
    d = u - 1.0
    log1p = torch.log(u).mul_(e).div_(d)
    return torch.where(d == 0, e, log1p).add_(torch.clamp(x, min=0.0))


def _focal_chunk(x: Tensor, t: Tensor, gamma: float, alpha: float | None, grad: bool) -> Tensor:
    """Focal loss (grad=False) or d loss / d x (grad=True) of one flat chunk, without weights.

    loss = a_t * q^gamma * ce, with p = sigmoid(x), q = 1 - p_t = p + t (1 - 2p), ce = softplus(x) - t x and
    a_t = t alpha + (1 - t)(1 - alpha). d loss/dx = a_t q^(gamma-1) [q (p - t) - gamma (2t - 1) p (1 - p) ce].
    """
    p = torch.sigmoid(x)
    ce = softplus(x).addcmul_(t, x, value=-1.0)
    q = torch.addcmul(p, t, torch.mul(p, -2.0).add_(1.0))
    if not grad:
        out = ce.mul_(q.pow_(gamma)) if gamma else ce
    else:
        # gamma 0: p - t. Else the bracket, then q^(gamma-1) (gamma >= 1 here)
        g = torch.sub(p, t)
        if gamma:
            g.mul_(q)
            pp = torch.rsub(p, 1.0).mul_(p).mul_(torch.mul(t, 2.0).sub_(1.0)).mul_(ce)
            g.add_(pp, alpha=-gamma)
            if gamma != 1.0:
                g.mul_(q.pow_(gamma - 1.0))
        out = g
    if alpha is not None:
        out.mul_(torch.mul(t, 2.0 * alpha - 1.0).add_(1.0 - alpha))
    return out


# torch.compile'd (inductor: one fused C++ loop, no temporaries) focal loss and gradient kernels for CPU, set by
# compile_focal_kernels(); None = the eager chunked kernels.
_compiled_focal: dict[bool, object] | None = None


def compile_focal_kernels() -> str | None:
    """Switch the CPU focal loss to torch.compile'd kernels (one fused loop each for the loss and its gradient).

    Measured on the 2-core machine (FPN-lite 320, batch 8: 9.3M logits): loss 38 -> 10 ms, gradient 46 -> 8 ms,
    within 2e-7 relative of the eager kernels. Compiles once (dynamic shapes; a few seconds, more without a
    warm inductor cache) and checks the compiled kernels against the eager ones on a small input. Returns None
    when in use, else why not (no C++ compiler, inductor error, mismatch): the eager kernels stay.
    """
    global _compiled_focal
    if _compiled_focal is not None:
        return None
    quiet = logging.getLogger("torch.utils.cpp_extension")  # "No CUDA runtime is found" on CPU-only machines
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        kernels = {grad: torch.compile(lambda x, t, gamma, alpha, grad=grad: _focal_chunk(x, t, gamma, alpha, grad),
                                       dynamic=True, fullgraph=True) for grad in (False, True)}
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(4099, generator=gen) * 4
        t = (torch.rand(4099, generator=gen) < 0.1).float()
        for grad, fn in kernels.items():
            want = _focal_chunk(x, t, 2.0, 0.25, grad)
            got = fn(x, t, 2.0, 0.25)
            if not torch.allclose(got, want, rtol=1e-5, atol=1e-7):
                return "compiled focal kernels disagree with the eager ones"
    except Exception as exc:  # noqa: BLE001 - any inductor / compiler failure: keep the eager kernels
        msg = str(exc).strip().splitlines()
        return f"torch.compile failed: {msg[0] if msg else type(exc).__name__}"
    finally:
        quiet.setLevel(level)
    _compiled_focal = kernels
    return None


class _FusedSigmoidFocal(torch.autograd.Function):
    """Elementwise sigmoid focal loss with an analytic backward, computed in cache-sized chunks on CPU.

    Same values as the composite expression (TF's `SigmoidFocalClassificationLoss`) to float rounding, a
    fraction of its time and memory: autograd keeps only the logits and targets.
    """

    @staticmethod
    def forward(ctx, x: Tensor, t: Tensor, gamma: float, alpha: float | None) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, t)
        ctx.gamma, ctx.alpha = gamma, alpha
        return _FusedSigmoidFocal._apply(x, t, gamma, alpha, grad=False)

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, t = ctx.saved_tensors
        g = _FusedSigmoidFocal._apply(x, t, ctx.gamma, ctx.alpha, grad=True)
        return g.mul_(grad_out), None, None, None

    @staticmethod
    def _apply(x: Tensor, t: Tensor, gamma: float, alpha: float | None, grad: bool) -> Tensor:
        xf, tf = x.reshape(-1), t.expand_as(x).reshape(-1)
        n = xf.numel()
        if _compiled_focal is not None and x.device.type == "cpu":
            return _compiled_focal[grad](xf, tf, gamma, alpha).view_as(x)  # type: ignore[operator]
        if x.device.type != "cpu" or n <= _FOCAL_CHUNK:
            return _focal_chunk(xf, tf, gamma, alpha, grad).view_as(x)
        out = torch.empty_like(xf)
        for i in range(0, n, _FOCAL_CHUNK):
            j = min(n, i + _FOCAL_CHUNK)
            out[i:j] = _focal_chunk(xf[i:j], tf[i:j], gamma, alpha, grad)
        return out.view_as(x)


class SigmoidFocalClassificationLoss(Loss):
    def __init__(self, gamma: float = 2.0, alpha: float | None = 0.25) -> None:
        self.gamma = float(gamma)
        self.alpha = None if alpha is None else float(alpha)

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        if (self.gamma == 0.0 or self.gamma >= 1.0) and not target.requires_grad:
            loss = _FusedSigmoidFocal.apply(prediction, target.to(prediction.dtype), self.gamma, self.alpha)
            return loss * _class_weights(weights, loss)
        return self._reference(prediction, target, weights)

    def _reference(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        """The composite expression (autograd through every op): any gamma, differentiable targets."""
        ce = F.binary_cross_entropy_with_logits(prediction, target, reduction="none")
        p = torch.sigmoid(prediction)
        p_t = target * p + (1 - target) * (1 - p)
        loss = ce
        if self.gamma:
            loss = loss * torch.pow(1.0 - p_t, self.gamma)
        if self.alpha is not None:
            loss = loss * (target * self.alpha + (1 - target) * (1 - self.alpha))
        return loss * _class_weights(weights, loss)


class WeightedSoftmaxClassificationLoss(Loss):
    def __init__(self, logit_scale: float = 1.0) -> None:
        self.logit_scale = float(logit_scale)

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        if weights.dim() == prediction.dim():
            weights = weights.mean(-1)
        logp = F.log_softmax(prediction / self.logit_scale, dim=-1)
        return -(target * logp).sum(-1) * weights


class BootstrappedSigmoidClassificationLoss(Loss):
    def __init__(self, alpha: float, bootstrap_type: str = "soft") -> None:
        if bootstrap_type not in ("soft", "hard"):
            raise ValueError("bootstrap_type must be 'soft' or 'hard'")
        self.alpha = float(alpha)
        self.bootstrap_type = bootstrap_type

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        p = torch.sigmoid(prediction)
        if self.bootstrap_type == "soft":
            boot = self.alpha * target + (1.0 - self.alpha) * p
        else:
            boot = self.alpha * target + (1.0 - self.alpha) * (p > 0.5).to(p.dtype)
        ce = F.binary_cross_entropy_with_logits(prediction, boot, reduction="none")
        return ce * _class_weights(weights, ce)


class PenaltyReducedLogisticFocalLoss(Loss):
    """CenterNet's pixel-wise focal loss (Objects as Points, Eq. 1; TF `PenaltyReducedLogisticFocalLoss`).

    prediction: logits [B, A, K] (A = pixels); target: splatted heatmap in [0, 1]; weights [B, A, K] or
    [B, A, 1] -> [B, A, K]. Pixels whose target is exactly 1.0 are positives: -(1-p)^alpha log p; the others
    -(1-t)^beta p^alpha log(1-p), with p = sigmoid clipped to [clip, 1 - clip].
    """

    def __init__(self, alpha: float = 2.0, beta: float = 4.0, sigmoid_clip_value: float = 1e-4) -> None:
        self.alpha, self.beta, self.clip = float(alpha), float(beta), float(sigmoid_clip_value)

    def _compute(self, prediction: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        p = torch.sigmoid(prediction).clamp(self.clip, 1.0 - self.clip)
        positive = (1.0 - p).pow(self.alpha) * torch.log(p)
        negative = (1.0 - target).pow(self.beta) * p.pow(self.alpha) * torch.log(1.0 - p)
        loss = -torch.where(target == 1.0, positive, negative)
        return loss * _class_weights(weights, loss)
