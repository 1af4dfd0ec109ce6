"""ResNet v2 (pre-activation) 50/101/152 as `tf.keras.applications.ResNet50V2/101V2/152V2` compute it, and the
TF OD API's Keras `resnet_v1_18` / `resnet_v1_34` (`models/keras_models/resnet_v1.py`), which despite the name
are pre-activation networks of basic blocks built by the same Keras `ResNet(preact=True, use_bias=True)`: two
3x3 convs per unit, the stride in the last unit of conv3..conv5 (strides 4, 8, 16, 32).

Stem: 7x7/2 conv with bias (3 px zero padding), 3x3/2 max pool (1 px padding), no stem batch norm. Stacks
conv2..conv5 of `block2` units: pre-activation BN + ReLU, shortcut (1x1 conv with bias on the pre-activation
in the first unit, else identity or a 1x1/stride max pool), 1x1 conv - BN - ReLU - 3x3 conv (stride, 1 px
zero padding) - BN - ReLU - 1x1 conv with bias, add. As in Keras the stride sits in the LAST unit of conv2..conv4
(conv5 keeps stride 1), so the levels are 3 (conv2, stride 8), 4 (conv3), 5 (conv4 and conv5, stride 32).
Batch norm epsilon 1.001e-5, momentum 0.99 (Keras). `forward` returns {"conv2".."conv5": block outputs
(Keras `convK_blockN_out`)}. Keras' final `post_bn` is held for TF checkpoints but never run (CenterNet taps
conv5_block3_out before it): its parameters do not train, as in TF where it gets no gradient.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1.001e-5
MOMENTUM = 0.01
BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
BASIC = (18, 34)  # the TF OD API's Keras `resnet_v1_18/34`: pre-activation basic blocks (resnet_v1.block_basic)


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=EPS, momentum=MOMENTUM)


class PreActBlock(nn.Module):
    def __init__(self, in_ch: int, filters: int, stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        self.stride = stride
        self.preact_bn = _bn(in_ch)
        self.shortcut = nn.Conv2d(in_ch, 4 * filters, 1, stride=stride) if conv_shortcut else None
        self.conv1 = nn.Conv2d(in_ch, filters, 1, bias=False)
        self.bn1 = _bn(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(filters)
        self.conv3 = nn.Conv2d(filters, 4 * filters, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre, short = _preact_and_shortcut(self, x)
        y = F.relu(self.bn1(self.conv1(pre)))
        y = F.relu(self.bn2(self.conv2(y)))
        return short + self.conv3(y)


def _preact_and_shortcut(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The pre-activation (BN + ReLU) of a unit's input and its shortcut: the 1x1 conv on the pre-activation
    when the unit has one, else the input itself, subsampled by the unit's stride."""
    pre = F.relu(block.preact_bn(x))
    if block.shortcut is not None:
        return pre, block.shortcut(pre)
    return pre, (x[:, :, :: block.stride, :: block.stride] if block.stride > 1 else x)


class PreActBasicBlock(nn.Module):
    """TF OD API `resnet_v1.block_basic`: pre-activation BN + ReLU, shortcut (1x1 conv with bias on the
    pre-activation, stride 1, in the first unit; else identity or a 1x1/stride max pool), 3x3 conv - BN - ReLU -
    3x3 conv (stride) - BN - ReLU, add."""

    def __init__(self, in_ch: int, filters: int, stride: int, conv_shortcut: bool) -> None:
        super().__init__()
        self.stride = stride
        self.preact_bn = _bn(in_ch)
        self.shortcut = nn.Conv2d(in_ch, filters, 1) if conv_shortcut else None
        self.conv1 = nn.Conv2d(in_ch, filters, 3, padding=1, bias=False)
        self.bn1 = _bn(filters)
        self.conv2 = nn.Conv2d(filters, filters, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn(filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre, short = _preact_and_shortcut(self, x)
        y = F.relu(self.bn1(self.conv1(pre)))
        return short + F.relu(self.bn2(self.conv2(y)))


class ResNetV2Backbone(nn.Module):
    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        if depth not in BLOCKS:
            raise ValueError(f"unknown ResNet v2 depth {depth}; use one of {sorted(BLOCKS)}")
        self.depth = int(depth)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        stacks = []
        in_ch = 64
        basic = depth in BASIC
        block, expansion = (PreActBasicBlock, 1) if basic else (PreActBlock, 4)
        strides = (1, 2, 2, 2) if basic else (2, 2, 2, 1)
        for filters, blocks, last_stride in zip((64, 128, 256, 512), BLOCKS[depth], strides):
            units = [block(in_ch, filters, 1, conv_shortcut=True)]
            units += [block(expansion * filters, filters, 1, False) for _ in range(2, blocks)]
            units.append(block(expansion * filters, filters, last_stride, False))
            stacks.append(nn.Sequential(*units))
            in_ch = expansion * filters
        self.conv2, self.conv3, self.conv4, self.conv5 = stacks
        self.post_bn = _bn(in_ch)  # held, never run
        for p in self.post_bn.parameters():
            p.requires_grad_(False)
        self.out_channels = {f"conv{k}": expansion * f for k, f in zip(range(2, 6), (64, 128, 256, 512))}

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = F.max_pool2d(F.pad(self.conv1(x), (1, 1, 1, 1)), 3, 2)  # Keras ZeroPadding2D: zeros, not -inf
        out = {}
        for name in ("conv2", "conv3", "conv4", "conv5"):
            x = getattr(self, name)(x)
            out[name] = x
        return out
