"""MobileNet v1 (not in torchvision), TF layer layout: Conv2d_0 then 13 depthwise-separable blocks.

Depth of every layer is `max(int(d * depth_multiplier), min_depth)` like the TF OD API.
Levels: 2 = Conv2d_3_pointwise, 3 = Conv2d_5_pointwise, 4 = Conv2d_11_pointwise, 5 = Conv2d_13_pointwise.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.hyperparams import ConvBnAct, ConvHyperparams

# (depth, stride) for Conv2d_1 .. Conv2d_13 (depthwise separable blocks)
_BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
           (512, 1), (1024, 2), (1024, 1)]
_LEVEL_OF_BLOCK = {3: 2, 5: 3, 11: 4, 13: 5}


class MobileNetV1Backbone(nn.Module):
    built_from_hyperparams = True  # convs already initialised and l2-tagged from `hp`

    def __init__(self, hp: ConvHyperparams, depth_multiplier: float = 1.0, min_depth: int = 8,
                 explicit_padding: bool = False) -> None:
        super().__init__()

        def depth(d: int) -> int:
            return max(int(d * depth_multiplier), min_depth)

        layers: list[nn.Module] = [ConvBnAct(3, depth(32), 3, hp, stride=2, explicit_padding=explicit_padding)]
        in_ch = depth(32)
        self.out_channels: dict[int, int] = {}
        for i, (d, s) in enumerate(_BLOCKS, start=1):
            out = depth(d)
            layers.append(nn.Sequential(
                ConvBnAct(in_ch, in_ch, 3, hp, stride=s, groups=in_ch, explicit_padding=explicit_padding),
                ConvBnAct(in_ch, out, 1, hp),
            ))
            in_ch = out
            if i in _LEVEL_OF_BLOCK:
                self.out_channels[_LEVEL_OF_BLOCK[i]] = out
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in _LEVEL_OF_BLOCK:
                out[_LEVEL_OF_BLOCK[i]] = x
        return out

