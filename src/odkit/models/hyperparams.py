"""Conv hyperparameters (TF OD API `Hyperparams`) as a plain dataclass plus layer factories.

`ConvHyperparams` is what `odkit.builders.hyperparams_builder.build_conv_hyperparams` returns. The factories
build conv -> batch norm -> activation blocks that honour it:

- initializer: truncated_normal / random_normal (mean, stddev) or variance_scaling (factor, mode, uniform)
  on conv kernels; biases start at 0.
- l2 regularizer: each kernel is tagged with `weight`; `l2_regularization_loss(module)` returns
  `sum(0.5 * weight * sum(w**2))` (TF's `slim.l2_regularizer` / `keras l2(weight * 0.5)` as used by the
  TF OD API hyperparams builder).
- batch_norm: momentum = 1 - decay, eps = epsilon, scale (gamma trainable, else fixed 1), center (beta trainable,
  else fixed 0), train=false freezes the statistics. No batch_norm: convs get a bias (TF `use_bias`);
  force_use_bias adds a bias anyway.
- activation: NONE, RELU, RELU_6, SWISH.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn

L2_ATTR = "_odkit_l2"
L2_BIAS_ATTR = "_odkit_l2_bias"  # l2 weight on the bias too (keras bias_regularizer, e.g. TF EfficientNet)
L2_ALWAYS_ATTR = "_odkit_l2_always"  # count the l2 term even for frozen weights (held-but-unused TF layers)


@dataclass(frozen=True)
class Initializer:
    kind: str = "truncated_normal"  # truncated_normal | random_normal | variance_scaling
    mean: float = 0.0
    stddev: float = 1.0
    factor: float = 2.0
    mode: str = "FAN_IN"  # FAN_IN | FAN_OUT | FAN_AVG
    uniform: bool = False


@dataclass(frozen=True)
class BatchNormParams:
    decay: float = 0.999
    epsilon: float = 0.001
    center: bool = True
    scale: bool = False
    train: bool = True


@dataclass(frozen=True)
class ConvHyperparams:
    activation: str = "RELU"  # NONE | RELU | RELU_6 | SWISH
    l2_weight: float = 0.0
    initializer: Initializer = Initializer()
    batch_norm: BatchNormParams | None = None
    force_use_bias: bool = False

    def with_overrides(self, **kwargs) -> ConvHyperparams:
        return replace(self, **kwargs)

    @property
    def use_bias(self) -> bool:
        return self.force_use_bias or self.batch_norm is None or not self.batch_norm.center


def default_hyperparams(l2_weight: float = 0.0, activation: str = "RELU") -> ConvHyperparams:
    """Backbone defaults (used when override_base_feature_extractor_hyperparams is false)."""
    return ConvHyperparams(
        activation=activation,
        l2_weight=l2_weight,
        initializer=Initializer("variance_scaling", factor=2.0, mode="FAN_IN", uniform=False),
        batch_norm=BatchNormParams(decay=0.997, epsilon=0.001, center=True, scale=True),
    )


def init_weight(weight: torch.Tensor, init: Initializer) -> None:
    """Initialise a conv kernel [out, in/groups, kh, kw] in place like the TF initializer."""
    with torch.no_grad():
        if init.kind == "variance_scaling":
            fan_out_tf = weight.shape[0] * weight[0, 0].numel()
            fan_in_tf = weight[0].numel()
            if weight.shape[1] == 1 and weight.dim() == 4 and weight.shape[0] > 1:
                # depthwise: TF counts fan_out as in_channels * multiplier * k * k (same as fan_in * multiplier)
                fan_out_tf = weight.shape[0] * weight[0, 0].numel()
            fan = {"FAN_IN": fan_in_tf, "FAN_OUT": fan_out_tf,
                   "FAN_AVG": (fan_in_tf + fan_out_tf) / 2.0}.get(init.mode, fan_in_tf)
            if init.uniform:
                limit = math.sqrt(3.0 * init.factor / fan)
                weight.uniform_(-limit, limit)
            else:
                std = math.sqrt(1.3 * init.factor / fan)  # TF1 variance_scaling truncated-normal correction
                nn.init.trunc_normal_(weight, 0.0, std, -2 * std, 2 * std)
        elif init.kind == "random_normal":
            weight.normal_(init.mean, init.stddev)
        else:
            nn.init.trunc_normal_(weight, init.mean, init.stddev,
                                  init.mean - 2 * init.stddev, init.mean + 2 * init.stddev)


class _ReLU6Inplace(torch.autograd.Function):
    """relu6 in place whose backward reads the output: y in (0, 6) exactly where x is, so the mask is the same."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.mark_dirty(x)
        y = torch.nn.functional.hardtanh_(x, 0.0, 6.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        (y,) = ctx.saved_tensors
        return torch.ops.aten.hardtanh_backward(grad, y, 0.0, 6.0)


class ReLU6(nn.ReLU6):
    """nn.ReLU6(inplace=True) that saves only its output for backward.

    ATen's in-place hardtanh_ keeps a copy of its input for the backward (its derivative is written in terms
    of the input), so every batch norm + relu6 pair held one more activation-sized tensor and copied it:
    in the FPN-lite 320 training step (batch 8) 59 such copies, 16 ms and 0.4 GB of the peak. Same values and
    gradients (hardtanh_backward on the output: 0 < y < 6 exactly where 0 < x < 6). Plain nn.ReLU6 behaviour
    without autograd, while tracing / scripting / compiling (exports stay standard ops).
    """

    def __init__(self) -> None:
        super().__init__(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing()
                and not torch.jit.is_scripting() and not torch.compiler.is_compiling()):
            return _ReLU6Inplace.apply(x)
        return super().forward(x)


def activation_layer(name: str) -> nn.Module:
    if name == "RELU":
        return nn.ReLU(inplace=True)
    if name == "RELU_6":
        return ReLU6()
    if name == "SWISH":
        return nn.SiLU(inplace=True)
    return nn.Identity()


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that always normalises with its moving statistics (TF `train: false` / freeze_batchnorm)."""

    def train(self, mode: bool = True) -> FrozenStatsBatchNorm2d:
        super().train(False)
        self.training = False
        return self


class FrozenStatsBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d that always normalises with its moving statistics (TF `training=False`)."""

    def train(self, mode: bool = True) -> FrozenStatsBatchNorm1d:
        super().train(False)
        self.training = False
        return self


def batch_norm_layer(channels: int, params: BatchNormParams, frozen: bool = False) -> nn.BatchNorm2d:
    cls = FrozenStatsBatchNorm2d if (frozen or not params.train) else nn.BatchNorm2d
    bn = cls(channels, eps=params.epsilon, momentum=1.0 - params.decay, affine=True)
    if not params.scale:
        bn.weight.requires_grad_(False)
    if not params.center:
        bn.bias.requires_grad_(False)
    return bn


def conv2d(in_ch: int, out_ch: int, kernel: int, hp: ConvHyperparams, *, stride: int = 1, groups: int = 1,
           bias: bool | None = None, explicit_padding: bool = False) -> nn.Module:
    """A conv with TF "SAME" padding (or explicit fixed padding), initialised and tagged for l2."""
    use_bias = hp.use_bias if bias is None else bias
    conv = SameConv2d(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=use_bias,
                      explicit_padding=explicit_padding)
    init_weight(conv.weight, hp.initializer)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    setattr(conv, L2_ATTR, float(hp.l2_weight))
    return conv


_static_pads = False


@contextlib.contextmanager
def static_same_padding(enabled: bool = True) -> Iterator[None]:
    """While tracing for export a network whose input size is fixed (the resizer's output; export requires
    one): SAME pads become constants in the graph instead of arithmetic on the input shape, so onnxruntime
    folds each Pad into its Conv (no Pad node, no layout reorders around it: FPN-lite 320, 11 Pads and
    ~3 ms of 28 at batch 1). Only for fixed sizes: the constants are the traced ones."""
    global _static_pads
    old, _static_pads = _static_pads, bool(enabled)
    try:
        yield
    finally:
        _static_pads = old


def _same_pads(h, w, k: int, s: int) -> tuple:
    """TF SAME padding (left, right, top, bottom) of a k x k, stride s window over [h, w]."""
    if _static_pads and torch.jit.is_tracing():
        h, w = int(h), int(w)
    pad_h = max(((h + s - 1) // s - 1) * s + k - h, 0)  # ceil without negative //: ONNX Div truncates
    pad_w = max(((w + s - 1) // s - 1) * s + k - w, 0)
    return pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2


class SameConv2d(nn.Conv2d):
    """Conv2d with TF "SAME" padding: symmetric padding for stride 1, dynamic (right/bottom heavy) for stride > 1.

    With `explicit_padding` (TF `use_explicit_padding`), pads (k-1)//2 and (k-1) - (k-1)//2 on each side
    independently of the input size (TF `fixed_padding`), then runs a VALID conv.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1,
                 bias: bool = True, explicit_padding: bool = False) -> None:
        symmetric = stride == 1 and kernel % 2 == 1
        super().__init__(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=bias,
                         padding=(kernel - 1) // 2 if symmetric and not explicit_padding else 0)
        self._explicit = explicit_padding
        self._dynamic = not symmetric and not explicit_padding and kernel > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.kernel_size[0]
        if self._explicit and k > 1:
            beg = (k - 1) // 2
            x = nn.functional.pad(x, (beg, k - 1 - beg, beg, k - 1 - beg))
        elif self._dynamic:
            x = nn.functional.pad(x, _same_pads(x.shape[-2], x.shape[-1], k, self.stride[0]))
        return super().forward(x)


def tf_same_padding(module: nn.Module, explicit_padding: bool = False) -> nn.Module:
    """Turn every zero-padded ``nn.Conv2d`` under ``module`` (e.g. torchvision's, padding (k-1)//2) into a
    `SameConv2d` with TF "SAME" padding (or TF `fixed_padding` with ``explicit_padding``), in place; parameter
    names and shapes do not change."""
    for m in module.modules():
        if type(m) is nn.Conv2d and m.padding_mode == "zeros" and m.dilation == (1, 1):
            k, s = m.kernel_size[0], m.stride[0]
            if m.kernel_size != (k, k) or m.stride != (s, s) or m.padding not in ((0, 0), ((k - 1) // 2,) * 2):
                continue
            symmetric = s == 1 and k % 2 == 1 and not explicit_padding
            m.__class__ = SameConv2d
            m.padding = ((k - 1) // 2,) * 2 if symmetric else (0, 0)
            m._explicit = explicit_padding
            m._dynamic = not symmetric and not explicit_padding and k > 1
    return module


def max_pool_same(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    """TF max pooling with "SAME" padding: pads (right/bottom heavy) so out = ceil(in / stride); padded
    positions never win (-inf)."""
    pads = _same_pads(x.shape[-2], x.shape[-1], kernel, stride)
    if any(pads):
        x = nn.functional.pad(x, pads, value=float("-inf"))
    return nn.functional.max_pool2d(x, kernel, stride)


class SameMaxPool2d(nn.Module):
    """`max_pool_same` as a module (TF `MaxPooling2D(padding="same")`)."""

    def __init__(self, kernel: int, stride: int) -> None:
        super().__init__()
        self.kernel, self.stride = int(kernel), int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_same(x, self.kernel, self.stride)


class ConvBnAct(nn.Sequential):
    """conv -> (batch norm) -> activation, as the TF OD API Keras layers built from conv_hyperparams."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, hp: ConvHyperparams, *, stride: int = 1,
                 groups: int = 1, activation: bool = True, freeze_bn: bool = False,
                 explicit_padding: bool = False) -> None:
        layers: list[nn.Module] = [conv2d(in_ch, out_ch, kernel, hp, stride=stride, groups=groups,
                                          explicit_padding=explicit_padding)]
        if hp.batch_norm is not None:
            layers.append(batch_norm_layer(out_ch, hp.batch_norm, frozen=freeze_bn))
        if activation:
            layers.append(activation_layer(hp.activation))
        super().__init__(*layers)


def keras_default_pointwise(conv: nn.Conv2d) -> nn.Conv2d:
    """A SeparableConv2D pointwise kernel built without pointwise_initializer/regularizer (TF OD API FPN and
    weight-shared towers set only the depthwise ones): Keras glorot_uniform, no l2."""
    nn.init.xavier_uniform_(conv.weight)
    setattr(conv, L2_ATTR, 0.0)
    return conv


class SeparableConv(nn.Sequential):
    """Keras SeparableConv2D: depthwise kxk then pointwise 1x1 (no norm in between), then bn/activation.

    ``pointwise_hyperparams=False``: the pointwise conv gets Keras' defaults (glorot_uniform, no l2), as the
    TF OD API's `create_conv_block` (FPN) builds it; BiFPN applies the hyperparams to both.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, hp: ConvHyperparams, *, stride: int = 1,
                 activation: bool = True, batch_norm: bool = True, freeze_bn: bool = False,
                 explicit_padding: bool = False, bias: bool | None = None,
                 pointwise_hyperparams: bool = True) -> None:
        use_bias = (hp.use_bias if batch_norm else True) if bias is None else bias
        layers: list[nn.Module] = [
            conv2d(in_ch, in_ch, kernel, hp, stride=stride, groups=in_ch, bias=False,
                   explicit_padding=explicit_padding),
            conv2d(in_ch, out_ch, 1, hp, bias=use_bias),
        ]
        if not pointwise_hyperparams:
            keras_default_pointwise(layers[1])
        if batch_norm and hp.batch_norm is not None:
            layers.append(batch_norm_layer(out_ch, hp.batch_norm, frozen=freeze_bn))
        if activation:
            layers.append(activation_layer(hp.activation))
        super().__init__(*layers)


def tag_l2(module: nn.Module, weight: float) -> None:
    """Tag every conv/linear kernel under `module` (that is not tagged yet) with an l2 weight."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and not hasattr(m, L2_ATTR):
            setattr(m, L2_ATTR, float(weight))


def tag_l2_bias(module: nn.Module, weight: float) -> None:
    """Tag every conv/linear bias under `module` with an l2 weight (keras `bias_regularizer`)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None and not hasattr(m, L2_BIAS_ATTR):
            setattr(m, L2_BIAS_ATTR, float(weight))


def l2_regularization_loss(module: nn.Module) -> torch.Tensor:
    """sum over tagged kernels (and tagged biases) of 0.5 * weight * sum(w**2) (TF l2 regularizer semantics)."""
    total: torch.Tensor | None = None
    for m in module.modules():
        always = getattr(m, L2_ALWAYS_ATTR, False)
        for attr, name in ((L2_ATTR, "weight"), (L2_BIAS_ATTR, "bias")):
            w = getattr(m, attr, 0.0)
            p = getattr(m, name, None) if w > 0.0 else None
            if p is not None and (p.requires_grad or always):
                term = (0.5 * w) * p.square().sum()
                total = term if total is None else total + term
    if total is None:
        p = next(module.parameters(), None)
        return torch.zeros((), device=p.device if p is not None else None)
    return total


def freeze_batch_norm(module: nn.Module) -> None:
    """Turn every BatchNorm2d under `module` into a frozen-statistics one (freeze_batchnorm: true)."""
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d) and not isinstance(m, FrozenStatsBatchNorm2d):
            m.__class__ = FrozenStatsBatchNorm2d
            m.training = False
