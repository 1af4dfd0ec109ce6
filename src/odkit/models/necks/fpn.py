"""FPN top-down feature maps + coarse (stride-2) levels, as TF OD API `KerasFpnTopDownFeatureMaps`.

- lateral 1x1 "projection" convs with bias (no norm, no activation), depth `depth`;
- top-down: nearest-neighbour x2 upsampling (cropped to the lateral size) + add;
- 3x3 "smoothing" conv (separable when use_depthwise: FPN-lite) + batch norm + activation on every level
  except the coarsest backbone level (which is the projection only, as in TF);
- levels above the backbone's last level: 3x3 stride-2 conv blocks (separable when use_depthwise) applied to
  the previous output ("bottom_up_Conv2d_*").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odkit.models.hyperparams import ConvBnAct, ConvHyperparams, SeparableConv, conv2d


def conv_block(in_ch: int, out_ch: int, hp: ConvHyperparams, *, stride: int, use_depthwise: bool,
               freeze_bn: bool, explicit_padding: bool) -> nn.Module:
    """TF `create_conv_block`: (separable) 3x3 conv + batch norm + activation."""
    if use_depthwise:
        return SeparableConv(in_ch, out_ch, 3, hp, stride=stride, freeze_bn=freeze_bn,
                             explicit_padding=explicit_padding, pointwise_hyperparams=False)
    return ConvBnAct(in_ch, out_ch, 3, hp, stride=stride, freeze_bn=freeze_bn, explicit_padding=explicit_padding)


def upsample2_to(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling, cropped to `like`'s spatial size."""
    up = F.interpolate(x, scale_factor=2.0, mode="nearest")
    return up[..., : like.shape[-2], : like.shape[-1]]


class FPN(nn.Module):
    """Levels min_level..max_level from backbone levels min_level..min(max_level, 5)."""

    def __init__(self, in_channels: dict[int, int], min_level: int, max_level: int, depth: int,
                 hp: ConvHyperparams, *, use_depthwise: bool = False, freeze_bn: bool = False,
                 explicit_padding: bool = False) -> None:
        super().__init__()
        self.min_level, self.max_level = min_level, max_level
        self.base_max = min(max_level, max(in_channels))
        self.levels = list(range(min_level, self.base_max + 1))
        self.lateral = nn.ModuleDict({
            str(lvl): conv2d(in_channels[lvl], depth, 1, hp, bias=True) for lvl in self.levels})
        self.smooth = nn.ModuleDict({
            str(lvl): conv_block(depth, depth, hp, stride=1, use_depthwise=use_depthwise, freeze_bn=freeze_bn,
                                 explicit_padding=explicit_padding)
            for lvl in self.levels[:-1]})
        self.coarse = nn.ModuleList([
            conv_block(depth, depth, hp, stride=2, use_depthwise=use_depthwise, freeze_bn=freeze_bn,
                       explicit_padding=explicit_padding)
            for _ in range(self.base_max + 1, max_level + 1)])
        self.out_channels = [depth] * (max_level - min_level + 1)

    def forward(self, feats: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        top = self.lateral[str(self.base_max)](feats[self.base_max])
        outs = [top]
        for lvl in reversed(self.levels[:-1]):
            lateral = self.lateral[str(lvl)](feats[lvl])
            top = lateral + upsample2_to(top, lateral)
            top = self.smooth[str(lvl)](top)
            outs.append(top)
        outs.reverse()
        last = outs[-1]
        for block in self.coarse:
            last = block(last)
            outs.append(last)
        return outs
