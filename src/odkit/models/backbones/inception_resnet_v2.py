"""Inception-ResNet-v2 as the TF OD API builds it for Faster R-CNN (`models/keras_models/inception_resnet_v2.py`:
the Keras application with `align_feature_maps=True` and `output_stride` 16 or 8).

Layout (Keras `InceptionResNetV2`): stem (conv 32 s2, conv 32, conv 64, maxpool s2, conv 80 1x1, conv 192,
maxpool s2), mixed_5b (320), 10 x block35 (scale 0.17), mixed_6a (1088), 20 x block17 (scale 0.1) ->
`block17_20_ac` = `proposal_features` (stride 16), then mixed_7a (2080), 9 x block8 (scale 0.2), block8_10
(scale 1, no activation), conv_7b 1x1 1536 -> `box_classifier_features`.
Every conv is `conv2d_bn`: conv without bias + batch norm (scale=False: no gamma, epsilon 1e-3, TF momentum
0.9997) + relu, except the blocks' up-projection `*_conv` (bias, no batch norm). `align_feature_maps`: every
VALID padding is TF "SAME" (stride-2 convs / pools pad right-heavy), 3x3 average pool excludes the padding.
`output_stride` 8 (atrous) follows TF1 slim `inception_resnet_v2_base(output_stride=8)` as TF1's
`faster_rcnn_inception_resnet_v2` uses it: mixed_6a (convs and max pool) stride 1, every block17 conv
dilation 2, mixed_7a (second stage, on the crops) unchanged. TF2's Keras override also sets stride 1 on
mixed_7a's 384-filter conv and pool only, which cannot concatenate with its stride-2 branches: TF2 fails
to build `faster_rcnn_inception_resnet_v2_keras` at stride 8 (measured with the TF venv), odkit builds the
TF1 layout for both names.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.hyperparams import FrozenStatsBatchNorm2d, SameConv2d, max_pool_same

BN_EPSILON = 1e-3
BN_MOMENTUM = 1.0 - 0.9997


def _conv(cin: int, cout: int, k: int | tuple[int, int], stride: int, dilation: int, bias: bool) -> nn.Module:
    kh, kw = (k, k) if isinstance(k, int) else k
    if stride == 1:  # TF SAME at stride 1 (odd kernels): symmetric
        return nn.Conv2d(cin, cout, (kh, kw), padding=(dilation * (kh - 1) // 2, dilation * (kw - 1) // 2),
                         dilation=dilation, bias=bias)
    assert kh == kw and dilation == 1
    return SameConv2d(cin, cout, kh, stride=stride, bias=bias)


class ConvBN(nn.Sequential):
    """Keras `conv2d_bn`: conv (no bias) + batch norm (no gamma) + relu (or none)."""

    def __init__(self, cin: int, cout: int, k: int | tuple[int, int], stride: int = 1, dilation: int = 1,
                 activation: bool = True) -> None:
        bn = nn.BatchNorm2d(cout, eps=BN_EPSILON, momentum=BN_MOMENTUM)
        bn.weight.requires_grad_(False)  # scale=False: gamma is 1
        layers: list[nn.Module] = [_conv(cin, cout, k, stride, dilation, bias=False), bn]
        if activation:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class _MaxPool(nn.Module):
    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool_same(x, 3, self.stride)


class Block(nn.Module):
    """Inception-ResNet block35 / block17 / block8: x + scale * conv1x1(concat(branches)) (+ relu)."""

    def __init__(self, kind: str, channels: int, scale: float, activation: bool = True, atrous: bool = False
                 ) -> None:
        super().__init__()
        d = 2 if atrous and kind == "block17" else 1
        if kind == "block35":
            self.branches = nn.ModuleList([
                ConvBN(channels, 32, 1),
                nn.Sequential(ConvBN(channels, 32, 1), ConvBN(32, 32, 3)),
                nn.Sequential(ConvBN(channels, 32, 1), ConvBN(32, 48, 3), ConvBN(48, 64, 3)),
            ])
            mixed = 128
        elif kind == "block17":
            self.branches = nn.ModuleList([
                ConvBN(channels, 192, 1, dilation=d),
                nn.Sequential(ConvBN(channels, 128, 1, dilation=d), ConvBN(128, 160, (1, 7), dilation=d),
                              ConvBN(160, 192, (7, 1), dilation=d)),
            ])
            mixed = 384
        else:
            self.branches = nn.ModuleList([
                ConvBN(channels, 192, 1),
                nn.Sequential(ConvBN(channels, 192, 1), ConvBN(192, 224, (1, 3)), ConvBN(224, 256, (3, 1))),
            ])
            mixed = 448
        self.up = _conv(mixed, channels, 1, 1, d, bias=True)  # TF name "<block>_conv" (dilated in block17)
        self.scale = float(scale)
        self.activation = nn.ReLU() if activation else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mixed = torch.cat([b(x) for b in self.branches], dim=1)
        return self.activation(x + self.up(mixed) * self.scale)


class Mixed5b(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b0 = ConvBN(192, 96, 1)
        self.b1 = nn.Sequential(ConvBN(192, 48, 1), ConvBN(48, 64, 5))
        self.b2 = nn.Sequential(ConvBN(192, 64, 1), ConvBN(64, 96, 3), ConvBN(96, 96, 3))
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)
        self.b3 = ConvBN(192, 64, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(self.pool(x))], dim=1)


class Mixed6a(nn.Module):
    def __init__(self, atrous: bool) -> None:
        super().__init__()
        s = 1 if atrous else 2
        self.b0 = ConvBN(320, 384, 3, stride=s)
        self.b1 = nn.Sequential(ConvBN(320, 256, 1), ConvBN(256, 256, 3), ConvBN(256, 384, 3, stride=s))
        self.pool = _MaxPool(s)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1(x), self.pool(x)], dim=1)


class Mixed7a(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b0 = nn.Sequential(ConvBN(1088, 256, 1), ConvBN(256, 384, 3, stride=2))
        self.b1 = nn.Sequential(ConvBN(1088, 256, 1), ConvBN(256, 288, 3, stride=2))
        self.b2 = nn.Sequential(ConvBN(1088, 256, 1), ConvBN(256, 288, 3), ConvBN(288, 320, 3, stride=2))
        self.pool = _MaxPool(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1(x), self.b2(x), self.pool(x)], dim=1)


class InceptionResNetV2(nn.Module):
    """`proposal_features(x)` -> [B, 1088, H/16, W/16] (H/8 atrous); `box_classifier_features(crops)` ->
    [N, 1536, h', w']."""

    def __init__(self, output_stride: int = 16) -> None:
        super().__init__()
        if output_stride not in (8, 16):
            raise ValueError("output_stride must be 8 or 16")
        atrous = output_stride == 8
        self.stem = nn.Sequential(
            ConvBN(3, 32, 3, stride=2), ConvBN(32, 32, 3), ConvBN(32, 64, 3), _MaxPool(2),
            ConvBN(64, 80, 1), ConvBN(80, 192, 3), _MaxPool(2),
        )
        self.mixed_5b = Mixed5b()
        self.block35 = nn.Sequential(*[Block("block35", 320, 0.17) for _ in range(10)])
        self.mixed_6a = Mixed6a(atrous)
        self.block17 = nn.Sequential(*[Block("block17", 1088, 0.1, atrous=atrous) for _ in range(20)])
        self.mixed_7a = Mixed7a()
        self.block8 = nn.Sequential(*[Block("block8", 2080, 0.2) for _ in range(9)],
                                    Block("block8", 2080, 1.0, activation=False))
        self.conv_7b = ConvBN(2080, 1536, 1)

    def proposal_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.mixed_5b(self.stem(x))
        return self.block17(self.mixed_6a(self.block35(x)))

    def box_classifier_features(self, crops: torch.Tensor) -> torch.Tensor:
        return self.conv_7b(self.block8(self.mixed_7a(crops)))


def frozen_batch_norm(module: nn.Module) -> None:
    """batch_norm_trainable false: every batch norm keeps its statistics (TF FreezableBatchNorm training=False)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d) and not isinstance(child, FrozenStatsBatchNorm2d):
            frozen = FrozenStatsBatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum)
            frozen.load_state_dict(child.state_dict())
            frozen.weight.requires_grad_(False)
            setattr(module, name, frozen)
        else:
            frozen_batch_norm(child)
