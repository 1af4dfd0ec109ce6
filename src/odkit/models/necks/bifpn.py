"""BiFPN (EfficientDet) feature maps, following the TF OD API `KerasBiFpnFeatureMaps` layout.

Inputs: backbone levels min_level..input_max_level; higher levels are made by resampling (1x1 conv + batch
norm when the depth differs, then 3x3/2 max pooling). Each iteration has a top-down pass then a bottom-up pass.
Every node: resample inputs to the node's level (1x1 conv + batch norm when the depth differs, max pooling down,
nearest upsampling up), combine (fast_attention | weighted_sum | attention | sum), then activation ->
separable 3x3 conv -> batch norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from odkit.errors import UnsupportedError
from odkit.models.hyperparams import (
    ConvHyperparams,
    SeparableConv,
    activation_layer,
    batch_norm_layer,
    conv2d,
)

COMBINE_METHODS = ("fast_attention", "weighted_sum", "attention", "sum")


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    h, w = x.shape[-2], x.shape[-1]
    pad_h = max(((h + 1) // 2 - 1) * 2 + 3 - h, 0)  # no negative //: ONNX Div truncates
    pad_w = max(((w + 1) // 2 - 1) * 2 + 3 - w, 0)
    x = F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=float("-inf"))
    return F.max_pool2d(x, 3, 2)


class Resample(nn.Module):
    """Project to `out_ch` (1x1 conv + bn) if needed, then move from level `src` to level `dst`."""

    def __init__(self, in_ch: int, out_ch: int, src: int, dst: int, hp: ConvHyperparams, freeze_bn: bool) -> None:
        super().__init__()
        self.project: nn.Module = nn.Identity()
        if in_ch != out_ch:
            layers: list[nn.Module] = [conv2d(in_ch, out_ch, 1, hp)]
            if hp.batch_norm is not None:
                layers.append(batch_norm_layer(out_ch, hp.batch_norm, frozen=freeze_bn))
            self.project = nn.Sequential(*layers)
        self.steps = dst - src

    def forward(self, x: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
        x = self.project(x)
        for _ in range(max(self.steps, 0)):
            x = _max_pool_same(x)
        if self.steps < 0:
            x = F.interpolate(x, scale_factor=float(2 ** (-self.steps)), mode="nearest")
            if like is not None:
                x = x[..., : like.shape[-2], : like.shape[-1]]
        return x


class BiFPNNode(nn.Module):
    def __init__(self, inputs: list[tuple[int, int]], level: int, num_filters: int, combine: str,
                 hp: ConvHyperparams, freeze_bn: bool) -> None:
        super().__init__()
        self.resample = nn.ModuleList([Resample(ch, num_filters, lvl, level, hp, freeze_bn) for lvl, ch in inputs])
        self.combine = combine
        if combine in ("fast_attention", "weighted_sum", "attention"):
            self.weights = nn.Parameter(torch.ones(len(inputs)))
        self.act = activation_layer(hp.activation)
        self.conv = SeparableConv(num_filters, num_filters, 3, hp, activation=False, freeze_bn=freeze_bn)

    def forward(self, xs: list[torch.Tensor], like: torch.Tensor | None) -> torch.Tensor:
        ys = [r(x, like) for r, x in zip(self.resample, xs)]
        stacked = torch.stack(ys, dim=-1)
        if self.combine == "fast_attention":
            w = F.relu(self.weights)
            out = (stacked * w).sum(-1) / (w.sum() + 1e-4)
        elif self.combine == "weighted_sum":
            out = (stacked * self.weights).sum(-1)
        elif self.combine == "attention":
            out = (stacked * torch.softmax(self.weights, 0)).sum(-1)
        else:
            out = stacked.sum(-1)
        return self.conv(self.act(out))


class BiFPN(nn.Module):
    def __init__(self, in_channels: dict[int, int], min_level: int, max_level: int, num_iterations: int,
                 num_filters: int, hp: ConvHyperparams, *, combine_method: str = "fast_attention",
                 input_max_level: int = 5, freeze_bn: bool = False) -> None:
        super().__init__()
        if combine_method not in COMBINE_METHODS:
            raise UnsupportedError(f"bifpn combine_method {combine_method!r} is not supported",
                                   hint=f"use one of {', '.join(COMBINE_METHODS)}")
        self.min_level, self.max_level = min_level, max_level
        self.input_max = min(input_max_level, max(in_channels), max_level)
        self.levels = list(range(min_level, max_level + 1))
        chans = {lvl: in_channels[lvl] for lvl in range(min_level, self.input_max + 1)}
        self.extra = nn.ModuleList()
        prev = self.input_max
        for lvl in range(self.input_max + 1, max_level + 1):
            self.extra.append(Resample(chans[prev], num_filters, prev, lvl, hp, freeze_bn))
            chans[lvl] = num_filters
            prev = lvl
        self.iterations = nn.ModuleList()
        for _ in range(num_iterations):
            nodes = nn.ModuleDict()
            # top-down: level L from (L+1 result, L input)
            td_ch = {self.max_level: chans[self.max_level]}
            for lvl in reversed(self.levels[:-1]):
                nodes[f"td{lvl}"] = BiFPNNode([(lvl + 1, td_ch.get(lvl + 1, num_filters)), (lvl, chans[lvl])],
                                              lvl, num_filters, combine_method, hp, freeze_bn)
                td_ch[lvl] = num_filters
            # bottom-up: level L from (L-1 output, L top-down, L input); top level from (L-1 output, L input)
            for lvl in self.levels[1:]:
                ins = [(lvl - 1, num_filters)]
                if lvl != self.max_level:
                    ins.append((lvl, num_filters))
                ins.append((lvl, chans[lvl]))
                nodes[f"bu{lvl}"] = BiFPNNode(ins, lvl, num_filters, combine_method, hp, freeze_bn)
            self.iterations.append(nodes)
            chans = {lvl: num_filters for lvl in self.levels}
        self.out_channels = [num_filters] * len(self.levels)

    def forward(self, feats: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        x = {lvl: feats[lvl] for lvl in range(self.min_level, self.input_max + 1)}
        prev = self.input_max
        for lvl, block in zip(range(self.input_max + 1, self.max_level + 1), self.extra):
            x[lvl] = block(x[prev])
            prev = lvl
        for nodes in self.iterations:
            td = {self.max_level: x[self.max_level]}
            for lvl in reversed(self.levels[:-1]):
                td[lvl] = nodes[f"td{lvl}"]([td[lvl + 1], x[lvl]], x[lvl])
            out = {self.min_level: td[self.min_level]}
            for lvl in self.levels[1:]:
                ins = [out[lvl - 1]]
                if lvl != self.max_level:
                    ins.append(td[lvl])
                ins.append(x[lvl])
                out[lvl] = nodes[f"bu{lvl}"](ins, None)
            x = out
        return [x[lvl] for lvl in self.levels]
