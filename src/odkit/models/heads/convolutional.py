"""ConvolutionalBoxPredictor (TF OD API, Keras): separate weights per level.

Per level: num_layers_before_predictor 1x1 convs (depth clamped to [min_depth, max_depth]) with batch norm
and activation; then box and class convs of kernel_size (with use_depthwise: depthwise kxk + bn + act, then
1x1). Class bias starts at class_prediction_bias_init; dropout (keep probability) before the class conv
when use_dropout.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.heads.common import flatten_level
from odkit.models.hyperparams import ConvBnAct, ConvHyperparams, conv2d


def _head(in_ch: int, out_ch: int, k: int, hp: ConvHyperparams, use_depthwise: bool, freeze_bn: bool) -> nn.Module:
    if use_depthwise:
        return nn.Sequential(ConvBnAct(in_ch, in_ch, k, hp, groups=in_ch, freeze_bn=freeze_bn),
                             conv2d(in_ch, out_ch, 1, hp, bias=True))
    return conv2d(in_ch, out_ch, k, hp, bias=True)


class ConvolutionalBoxPredictor(nn.Module):
    def __init__(self, in_channels: list[int], num_anchors: list[int], num_class_slots: int, hp: ConvHyperparams,
                 *, min_depth: int = 0, max_depth: int = 0, num_layers_before_predictor: int = 0,
                 kernel_size: int = 1, use_dropout: bool = True, dropout_keep_probability: float = 0.8,
                 class_prediction_bias_init: float = 0.0, use_depthwise: bool = False, box_code_size: int = 4,
                 freeze_bn: bool = False) -> None:
        super().__init__()
        self.num_class_slots = num_class_slots
        self.box_code_size = box_code_size
        self.towers = nn.ModuleList()
        self.box_heads = nn.ModuleList()
        self.class_heads = nn.ModuleList()
        for c, na in zip(in_channels, num_anchors):
            depth = max(min(c, max_depth), min_depth)
            layers: list[nn.Module] = []
            ch = c
            for _ in range(num_layers_before_predictor):
                layers.append(ConvBnAct(ch, depth, 1, hp, freeze_bn=freeze_bn))
                ch = depth
            self.towers.append(nn.Sequential(*layers))
            self.box_heads.append(_head(ch, na * box_code_size, kernel_size, hp, use_depthwise, freeze_bn))
            cls = _head(ch, na * num_class_slots, kernel_size, hp, use_depthwise, freeze_bn)
            last = cls[-1] if isinstance(cls, nn.Sequential) else cls
            nn.init.constant_(last.bias, class_prediction_bias_init)
            if use_dropout and dropout_keep_probability < 1.0:
                cls = nn.Sequential(nn.Dropout(1.0 - dropout_keep_probability), cls)
            self.class_heads.append(cls)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, classes = [], []
        for f, tower, bh, ch in zip(features, self.towers, self.box_heads, self.class_heads):
            f = tower(f)
            boxes.append(flatten_level(bh(f), self.box_code_size))
            classes.append(flatten_level(ch(f), self.num_class_slots))
        return torch.cat(boxes, 1), torch.cat(classes, 1)
