"""MobileNet v2 from torchvision (width_mult = depth_multiplier, no pretrained weights).

Levels (TF OD API `ssd_mobilenet_v2_fpn_keras` feature blocks layer_4/7/14/19): 2 = block_2_add (features[3]),
3 = block_5_add (features[6]), 4 = block_12_add (features[13]), 5 = out_relu (features[18]). `expand13`
(block_13_expand_relu, stride 16) is returned as key 14 for the non-FPN SSD extractor. `last_conv_depth`
replaces the final 1x1 conv depth.

Every conv uses TF "SAME" padding (`tf_same_padding`): torchvision pads stride-2 3x3 convs by one pixel on
each side, TF pads only bottom/right for even inputs, which shifts every stride-2 sampling grid by a pixel.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn
from torchvision.ops.misc import Conv2dNormActivation

from odkit.models.hyperparams import tf_same_padding

EXPAND13 = 14  # dict key for block_13_expand_relu


class MobileNetV2Backbone(nn.Module):
    def __init__(self, depth_multiplier: float = 1.0, last_conv_depth: int | None = None,
                 want_expand13: bool = False, explicit_padding: bool = False,
                 taps: dict[int, int] | None = None) -> None:
        super().__init__()
        net = torchvision.models.mobilenet_v2(weights=None, width_mult=depth_multiplier)
        features = net.features
        if last_conv_depth is not None:
            last = features[18]
            in_ch = last[0].in_channels
            features[18] = Conv2dNormActivation(in_ch, last_conv_depth, kernel_size=1,
                                                norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU6)
        tf_same_padding(features, explicit_padding)
        self.features = features
        self.want_expand13 = want_expand13
        # feature index -> returned key; `taps` replaces the default (CenterNet's FPN taps block_9_add = 10)
        self._levels = dict(taps) if taps is not None else {3: 2, 6: 3, 13: 4, 18: 5}
        self.out_channels = {key: (features[i][0].out_channels if i == 18 else features[i].out_channels)
                             for i, key in self._levels.items()}
        if want_expand13:
            self.out_channels[EXPAND13] = features[14].conv[0][0].out_channels

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            if i == 14 and self.want_expand13:
                expand = layer.conv[0](x)
                out[EXPAND13] = expand
                y = expand
                for sub in list(layer.conv)[1:]:
                    y = sub(y)
                x = y  # block 13 has stride 2: no residual
            else:
                x = layer(x)
            if i in self._levels:
                out[self._levels[i]] = x
        return out
