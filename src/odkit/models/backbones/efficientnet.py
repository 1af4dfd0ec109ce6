"""EfficientNet-B0..B7 as the TF OD API builds it (tensorflow/models `official/vision/image_classification/
efficientnet/efficientnet_model.py`, `rescale_input: False`), with the SSD EfficientDet endpoints.

What makes it TF's network rather than torchvision's:
- every conv is TF "SAME" (`SameConv2d`): stride-2 convs pad right/bottom-heavy (torchvision pads symmetrically);
- BatchNorm momentum 0.99 (torch momentum 0.01), epsilon 1e-3 (config `bn_momentum`, `bn_epsilon`);
- swish (`simple_swish`) activations, squeeze-excite with `max(1, int(block_input_filters * 0.25))` filters;
- filter rounding `round_filters` (divisor 8) and repeat rounding `ceil(depth_coefficient * repeats)`;
- drop connect in training mode on residual blocks, rate `0.2 * block_index / num_blocks` (whole samples,
  surviving ones scaled by 1 / keep_prob: Keras `Dropout(noise_shape=(None, 1, 1, 1))`);
- the l2 regularizer `weight_decay` 5e-6 (keras l2, i.e. `5e-6 * sum(w**2)`) on every conv/dense kernel and bias
  except the depthwise kernels (TF hands DepthwiseConv2D a `kernel_regularizer`, which it ignores).

Endpoints (TF OD API `_EFFICIENTNET_LEVEL_ENDPOINTS`): level 3 = `stack_2/block_1/add`, level 4 =
`stack_4/block_2/add`, level 5 = `stack_6/block_0/project_bn` -- fixed block positions, so for B1..B7 (more
repeats) levels 3 and 4 are taken in the middle of their stacks, as TF does. The blocks after the last endpoint,
the `top` 1x1 conv + batch norm and the `logits` dense layer are held (TF's `classification_backbone` owns them,
so TF2 zoo checkpoints contain them) but never run; their parameters are not trained (no gradient reaches them,
as in TF) and count only in the regularization loss, as in TF.

`tf_weight_layers()` lists the modules holding weights in the order of the Keras model's weighted layers
(`layer_with_weights-N` in TF object-based checkpoints).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from odkit.models.hyperparams import L2_ALWAYS_ATTR, L2_ATTR, SameConv2d, tag_l2, tag_l2_bias

# (input_filters, output_filters, kernel_size, num_repeat, expand_ratio, stride) -- se_ratio 0.25 everywhere
_BLOCKS = (
    (32, 16, 3, 1, 1, 1),
    (16, 24, 3, 2, 6, 2),
    (24, 40, 5, 2, 6, 2),
    (40, 80, 3, 3, 6, 2),
    (80, 112, 5, 3, 6, 1),
    (112, 192, 5, 4, 6, 2),
    (192, 320, 3, 1, 6, 1),
)
# width_coefficient, depth_coefficient (MODEL_CONFIGS)
_SCALING = {0: (1.0, 1.0), 1: (1.0, 1.1), 2: (1.1, 1.2), 3: (1.2, 1.4), 4: (1.4, 1.8), 5: (1.6, 2.2),
            6: (1.8, 2.6), 7: (2.0, 3.1)}
# level -> (stack, block, after): TF OD API _EFFICIENTNET_LEVEL_ENDPOINTS
LEVEL_ENDPOINTS = {1: (0, 0, "project_bn"), 2: (1, 1, "add"), 3: (2, 1, "add"), 4: (4, 2, "add"),
                   5: (6, 0, "project_bn")}
BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3
WEIGHT_DECAY = 5e-6  # keras l2(weight_decay): weight_decay * sum(w**2)
DROP_CONNECT_RATE = 0.2


def round_filters(filters: int, width_coefficient: float, divisor: int = 8) -> int:
    if not width_coefficient:
        return filters
    f = filters * width_coefficient
    new = max(divisor, int(f + divisor / 2) // divisor * divisor)
    if new < 0.9 * f:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    return int(math.ceil(depth_coefficient * repeats))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPSILON, momentum=1.0 - BN_MOMENTUM)


class ConvBN(nn.Module):
    """conv2d_block: conv (SAME, no bias) -> batch norm -> optional swish."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(in_ch, out_ch, kernel, stride=stride, groups=groups, bias=False)
        self.bn = _bn(out_ch)
        self.act = nn.SiLU() if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@dataclass(frozen=True)
class BlockSpec:
    stack: int
    index: int
    in_ch: int
    out_ch: int
    kernel: int
    stride: int
    expand_ratio: int
    drop_rate: float

    @property
    def name(self) -> str:
        return f"stack_{self.stack}/block_{self.index}"


class MBConvBlock(nn.Module):
    """mb_conv_block: [expand 1x1] -> depthwise kxk -> squeeze-excite -> project 1x1 -> [drop connect + add]."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.spec = spec
        filters = spec.in_ch * spec.expand_ratio
        self.expand = ConvBN(spec.in_ch, filters, 1) if spec.expand_ratio != 1 else None
        self.depthwise = ConvBN(filters, filters, spec.kernel, stride=spec.stride, groups=filters)
        reduced = max(1, int(spec.in_ch * 0.25))
        self.se_reduce = SameConv2d(filters, reduced, 1, bias=True)
        self.se_expand = SameConv2d(reduced, filters, 1, bias=True)
        self.project = ConvBN(filters, spec.out_ch, 1, act=False)
        self.residual = spec.stride == 1 and spec.in_ch == spec.out_ch
        self.drop_rate = spec.drop_rate if self.residual else 0.0

    def weight_layers(self) -> list[tuple[str, nn.Module]]:
        out: list[tuple[str, nn.Module]] = []
        if self.expand is not None:
            out += [("expand_conv2d", self.expand.conv), ("expand_bn", self.expand.bn)]
        out += [("depthwise_conv2d", self.depthwise.conv), ("depthwise_bn", self.depthwise.bn),
                ("se_reduce_conv2d", self.se_reduce), ("se_expand_conv2d", self.se_expand),
                ("project_conv2d", self.project.conv), ("project_bn", self.project.bn)]
        return [(f"{self.spec.name}/{n}", m) for n, m in out]

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs if self.expand is None else self.expand(inputs)
        x = self.depthwise(x)
        se = x.mean(dim=(2, 3), keepdim=True)
        se = torch.sigmoid(self.se_expand(nn.functional.silu(self.se_reduce(se))))
        x = self.project(x * se)
        if not self.residual:
            return x
        if self.training and self.drop_rate > 0:
            x = x * self.keep_mask(x) / (1.0 - self.drop_rate)
        return x + inputs

    def keep_mask(self, x: torch.Tensor) -> torch.Tensor:
        """Drop connect: 1 keeps a sample's residual branch, 0 drops it (probability drop_rate)."""
        keep = 1.0 - self.drop_rate
        return torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))


def block_specs(variant: int) -> list[BlockSpec]:
    width, depth = _SCALING[variant]
    total = sum(round_repeats(b[3], depth) for b in _BLOCKS)
    specs: list[BlockSpec] = []
    for stack, (fin, fout, k, reps, expand, stride) in enumerate(_BLOCKS):
        fin, fout = round_filters(fin, width), round_filters(fout, width)
        for i in range(round_repeats(reps, depth)):
            n = len(specs)
            specs.append(BlockSpec(stack, i, fin if i == 0 else fout, fout, k, stride if i == 0 else 1, expand,
                                   DROP_CONNECT_RATE * n / total))
    return specs


class EfficientNetBackbone(nn.Module):
    """forward(x) -> {level: feature map} for `levels` (default 3..5), computed as TF does."""

    def __init__(self, variant: int, levels: tuple[int, ...] = (3, 4, 5)) -> None:
        super().__init__()
        if variant not in _SCALING:
            raise ValueError(f"EfficientNet variant b{variant} is not supported (b0..b7)")
        width, _ = _SCALING[variant]
        self.variant = variant
        self.stem = ConvBN(3, round_filters(32, width), 3, stride=2)
        specs = block_specs(variant)
        self.blocks = nn.ModuleList([MBConvBlock(s) for s in specs])
        top_in = specs[-1].out_ch
        top_ch = round_filters(1280, width)
        self.top = ConvBN(top_in, top_ch, 1)
        self.logits = nn.Linear(top_ch, 1000)
        # endpoints: index of the block whose output (after `add`, or after project_bn) is the level
        self._endpoints: dict[int, int] = {}
        self.out_channels: dict[int, int] = {}
        for lvl in levels:
            stack, idx, _after = LEVEL_ENDPOINTS[lvl]
            pos = next(j for j, s in enumerate(specs) if s.stack == stack and s.index == idx)
            self._endpoints[pos] = lvl
            self.out_channels[lvl] = specs[pos].out_ch
        self._last = max(self._endpoints)
        # l2: keras l2(5e-6) on kernels and biases == odkit's 0.5 * w * sum(x**2) with w = 1e-5. Depthwise
        # kernels are not regularized: TF passes `kernel_regularizer` to DepthwiseConv2D, which only honours
        # `depthwise_regularizer`.
        for b in self.blocks:
            setattr(b.depthwise.conv, L2_ATTR, 0.0)
        tag_l2(self, 2.0 * WEIGHT_DECAY)
        tag_l2_bias(self, 2.0 * WEIGHT_DECAY)
        for m in self.unused_modules():
            for p in m.parameters():
                p.requires_grad_(False)
            for sub in m.modules():
                setattr(sub, L2_ALWAYS_ATTR, True)

    def unused_modules(self) -> list[nn.Module]:
        """Held for TF checkpoints, never run: blocks after the last endpoint, top conv/bn, logits."""
        return [*self.blocks[self._last + 1:], self.top, self.logits]

    def tf_weight_layers(self) -> list[tuple[str, nn.Module]]:
        """(Keras layer name, module) in the order of the Keras EfficientNet's weighted layers."""
        out: list[tuple[str, nn.Module]] = [("stem_conv2d", self.stem.conv), ("stem_bn", self.stem.bn)]
        for b in self.blocks:
            out += b.weight_layers()
        out += [("top_conv2d", self.top.conv), ("top_bn", self.top.bn), ("logits", self.logits)]
        return out

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.stem(x)
        out: dict[int, torch.Tensor] = {}
        for i, block in enumerate(self.blocks[: self._last + 1]):
            x = block(x)
            if i in self._endpoints:
                out[self._endpoints[i]] = x
        return out
