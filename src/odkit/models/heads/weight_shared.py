"""WeightSharedConvolutionalBoxPredictor (TF OD API, Keras): one conv tower + heads shared over levels.

Tower convs (kernel_size, depth; separable when use_depthwise) are shared across levels; their batch norms
are per level (as in TF). share_prediction_tower uses one tower for boxes and classes. The class head bias
starts at class_prediction_bias_init. Levels whose depth differs from `depth` get a 1x1 projection first.
"""

from __future__ import annotations

import torch
from torch import nn

from odkit.models.heads.common import flatten_level
from odkit.models.hyperparams import (
    ConvHyperparams,
    Initializer,
    activation_layer,
    batch_norm_layer,
    conv2d,
    init_weight,
)


def _conv(in_ch: int, out_ch: int, k: int, hp: ConvHyperparams, use_depthwise: bool, bias: bool,
          pointwise_hp: ConvHyperparams | None = None) -> nn.Module:
    """Conv or (depthwise kxk, pointwise 1x1); `pointwise_hp` (default hp) regularizes the pointwise kernel."""
    if use_depthwise:
        return nn.Sequential(conv2d(in_ch, in_ch, k, hp, groups=in_ch, bias=False),
                             conv2d(in_ch, out_ch, 1, pointwise_hp or hp, bias=bias))
    return conv2d(in_ch, out_ch, k, hp, bias=bias)


class _Tower(nn.Module):
    def __init__(self, depth: int, num_layers: int, kernel_size: int, num_levels: int, hp: ConvHyperparams,
                 use_depthwise: bool, apply_batch_norm: bool, freeze_bn: bool,
                 apply_hyperparams_pointwise: bool = False) -> None:
        super().__init__()
        use_bn = apply_batch_norm and hp.batch_norm is not None
        bias = hp.force_use_bias or not use_bn
        # TF: the tower's SeparableConv2D gets conv_hyperparams' regularizer/initializer on the depthwise kernel
        # only, unless apply_conv_hyperparams_pointwise
        pointwise_hp = hp if apply_hyperparams_pointwise else hp.with_overrides(l2_weight=0.0)
        self.convs = nn.ModuleList([_conv(depth, depth, kernel_size, hp, use_depthwise, bias, pointwise_hp)
                                    for _ in range(num_layers)])
        self.norms = nn.ModuleList([
            nn.ModuleList([batch_norm_layer(depth, hp.batch_norm, frozen=freeze_bn) if use_bn else nn.Identity()
                           for _ in range(num_levels)])
            for _ in range(num_layers)])
        self.act = activation_layer(hp.activation)

    def forward(self, x: torch.Tensor, level: int) -> torch.Tensor:
        for conv, norms in zip(self.convs, self.norms):
            x = self.act(norms[level](conv(x)))
        return x


class WeightSharedConvolutionalBoxPredictor(nn.Module):
    def __init__(self, in_channels: list[int], num_anchors: list[int], num_class_slots: int, hp: ConvHyperparams,
                 *, depth: int = 0, num_layers_before_predictor: int = 0, kernel_size: int = 3,
                 class_prediction_bias_init: float = 0.0, share_prediction_tower: bool = False,
                 use_depthwise: bool = False, apply_batch_norm: bool = True, box_code_size: int = 4,
                 freeze_bn: bool = False, apply_hyperparams_to_heads: bool = False,
                 apply_hyperparams_pointwise: bool = False) -> None:
        super().__init__()
        if len(set(num_anchors)) != 1:
            raise ValueError("weight shared box predictor needs the same number of anchors on every level")
        self.num_class_slots = num_class_slots
        self.box_code_size = box_code_size
        na = num_anchors[0]
        n = len(in_channels)
        tower_depth = depth if num_layers_before_predictor > 0 else in_channels[0]
        self.project = nn.ModuleList([
            conv2d(c, tower_depth, 1, hp, bias=True) if c != tower_depth else nn.Identity() for c in in_channels])
        args = (tower_depth, num_layers_before_predictor, kernel_size, n, hp, use_depthwise, apply_batch_norm,
                freeze_bn, apply_hyperparams_pointwise)
        self.box_tower = _Tower(*args)
        self.class_tower = None if share_prediction_tower else _Tower(*args)
        head_hp = hp
        if use_depthwise and not apply_hyperparams_to_heads:
            # TF: separable heads use random_normal(0.01) and no regularizer unless apply_conv_hyperparams_to_heads
            head_hp = ConvHyperparams(initializer=Initializer("random_normal", stddev=0.01), l2_weight=0.0)
        self.box_head = _conv(tower_depth, na * box_code_size, kernel_size, head_hp, use_depthwise, True)
        self.class_head = _conv(tower_depth, na * num_class_slots, kernel_size, head_hp, use_depthwise, True)
        last = self.class_head[-1] if isinstance(self.class_head, nn.Sequential) else self.class_head
        nn.init.constant_(last.bias, class_prediction_bias_init)
        for head in (self.box_head, self.class_head):
            for m in head.modules():
                if isinstance(m, nn.Conv2d):
                    init_weight(m.weight, head_hp.initializer)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, classes = [], []
        for i, f in enumerate(features):
            f = self.project[i](f)
            box_feat = self.box_tower(f, i)
            cls_feat = box_feat if self.class_tower is None else self.class_tower(f, i)
            boxes.append(flatten_level(self.box_head(box_feat), self.box_code_size))
            classes.append(flatten_level(self.class_head(cls_feat), self.num_class_slots))
        return torch.cat(boxes, 1), torch.cat(classes, 1)
