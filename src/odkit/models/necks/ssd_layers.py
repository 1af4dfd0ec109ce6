"""SSD extra feature layers (TF OD API `KerasMultiResolutionFeatureMaps`) for non-FPN MobileNet SSDs.

The first maps come straight from the backbone (layout depth -1); each extra map is a 1x1 conv to depth/2
followed by a 3x3 stride-2 conv to depth (depthwise + pointwise when use_depthwise), each with batch norm and
activation. Depths go through `max(int(d * depth_multiplier), min_depth)`.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.hyperparams import ConvBnAct, ConvHyperparams


class SSDExtraLayers(nn.Module):
    def __init__(self, base_channels: list[int], extra_depths: list[int], hp: ConvHyperparams, *,
                 depth_multiplier: float = 1.0, min_depth: int = 16, use_depthwise: bool = False,
                 freeze_bn: bool = False, explicit_padding: bool = False) -> None:
        super().__init__()

        def depth(d: int) -> int:
            return max(int(d * depth_multiplier), min_depth)

        blocks = []
        in_ch = base_channels[-1]
        self.out_channels = list(base_channels)
        for d in extra_depths:
            out = depth(d)
            mid = depth(d // 2)
            if use_depthwise:
                down: nn.Module = nn.Sequential(
                    ConvBnAct(mid, mid, 3, hp, stride=2, groups=mid, freeze_bn=freeze_bn,
                              explicit_padding=explicit_padding),
                    ConvBnAct(mid, out, 1, hp, freeze_bn=freeze_bn))
            else:
                down = ConvBnAct(mid, out, 3, hp, stride=2, freeze_bn=freeze_bn, explicit_padding=explicit_padding)
            blocks.append(nn.Sequential(ConvBnAct(in_ch, mid, 1, hp, freeze_bn=freeze_bn), down))
            in_ch = out
            self.out_channels.append(out)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, base: list[torch.Tensor]) -> list[torch.Tensor]:
        outs = list(base)
        x = base[-1]
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return outs
