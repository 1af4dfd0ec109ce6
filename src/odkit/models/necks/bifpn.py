"""BiFPN (EfficientDet) feature maps, node for node the TF OD API `KerasBiFpnFeatureMaps`.

Node list (TF `_create_bifpn_node_config`), in this order, each node's inputs in this order:
- levels input_max_level+1..max_level: `0_up_lvl_L` from `0_up_lvl_{L-1}` (resample only, no combine, no conv);
- per iteration i = 1..num_iterations:
  top-down `i_dn_lvl_L` for L = max_level-1 .. min_level, inputs [level-L output of iteration i-1,
  the previous node (level L+1)];
  bottom-up `i_up_lvl_L` for L = min_level+1 .. max_level, inputs [level-L output of iteration i-1,
  `i_dn_lvl_L` (not for max_level), the previous node (level L-1)].
Input resampling (`_create_bifpn_resample_block`, max_pooling): a 1x1 conv (bias per conv_hyperparams) + batch
norm when the input's channel count differs from the node's -- backbone maps count as "unknown" in TF, so they
are always projected, once per consuming node -- then 3x3/2 SAME max pooling per level down, or nearest
neighbour x2 upsampling per level up. Combine (`BiFPNCombineLayer`): fast_attention = sum_i x_i * relu(w_i) /
(sum_j relu(w_j) + 1e-4), weighted_sum, attention (softmax), or sum. Post-combine (conv_bn_act_pattern False):
activation -> separable 3x3 conv (SAME, bias per conv_hyperparams) -> batch norm.
Outputs: the last num_levels nodes (levels min_level..max_level).
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
    """Project to `out_ch` (1x1 conv + bn) if `project`, then move from level `src` to level `dst`."""

    def __init__(self, in_ch: int, out_ch: int, src: int, dst: int, hp: ConvHyperparams, freeze_bn: bool,
                 project: bool) -> None:
        super().__init__()
        self.project: nn.Module = nn.Identity()
        if project:
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
    """One TF BiFPN node: resample each input, combine, then (unless `post` is False) act -> sepconv -> bn."""

    def __init__(self, name: str, level: int, inputs: list[int], resample: list[Resample], combine: str | None,
                 num_filters: int, hp: ConvHyperparams, freeze_bn: bool, post: bool) -> None:
        super().__init__()
        self.name, self.level, self.inputs = name, level, inputs
        self.resample = nn.ModuleList(resample)
        self.combine = combine if len(inputs) > 1 else None
        if self.combine in ("fast_attention", "weighted_sum", "attention"):
            self.weights = nn.Parameter(torch.ones(len(inputs)))
        self.act = activation_layer(hp.activation) if post else None
        self.conv = SeparableConv(num_filters, num_filters, 3, hp, activation=False, freeze_bn=freeze_bn) \
            if post else None

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        like = None
        for r, x in zip(self.resample, xs):
            if r.steps == 0:
                like = x
        ys = [r(x, like) for r, x in zip(self.resample, xs)]
        if self.combine is None:
            out = ys[0]
        elif self.combine == "sum":
            out = torch.stack(ys, dim=-1).sum(-1)
        else:
            if self.combine == "fast_attention":
                w = F.relu(self.weights)
                w = w / (w.sum() + 1e-4)
            elif self.combine == "attention":
                w = torch.softmax(self.weights, 0)
            else:
                w = self.weights
            out = torch.matmul(torch.stack(ys, dim=-1), w.unsqueeze(-1)).squeeze(-1)
        if self.conv is not None:
            out = self.conv(self.act(out))
        return out


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
        # feature list entries: (name, level, channels or None for backbone maps)
        entries: list[tuple[str, int, int | None]] = [
            (f"0_up_lvl_{lvl}", lvl, None) for lvl in range(min_level, self.input_max + 1)]
        self.num_inputs = len(entries)
        self._in_channels = {lvl: in_channels[lvl] for lvl in range(min_level, self.input_max + 1)}
        specs: list[tuple[str, int, list[str], bool]] = []  # (name, level, input names, post)
        for lvl in range(self.input_max + 1, max_level + 1):
            specs.append((f"0_up_lvl_{lvl}", lvl, [f"0_up_lvl_{lvl - 1}"], False))
        for it in range(1, num_iterations + 1):
            for lvl in reversed(range(min_level, max_level)):
                first = f"{it - 1}_up_lvl_{lvl}" if (lvl > min_level or it == 1) else f"{it - 1}_dn_lvl_{lvl}"
                specs.append((f"{it}_dn_lvl_{lvl}", lvl, [first, specs[-1][0]], True))
            for lvl in range(min_level + 1, max_level + 1):
                ins = [f"{it - 1}_up_lvl_{lvl}"]
                if lvl < max_level:
                    ins.append(f"{it}_dn_lvl_{lvl}")
                ins.append(specs[-1][0])
                specs.append((f"{it}_up_lvl_{lvl}", lvl, ins, True))
        self.nodes = nn.ModuleList()
        for name, lvl, ins, post in specs:
            names = [e[0] for e in entries]
            idx = [names.index(n) for n in ins]
            resample = []
            for i in idx:
                _, src, ch = entries[i]
                in_ch = self._in_channels[src] if ch is None else ch
                resample.append(Resample(in_ch, num_filters, src, lvl, hp, freeze_bn, project=ch != num_filters))
            self.nodes.append(BiFPNNode(name, lvl, idx, resample, combine_method, num_filters, hp, freeze_bn, post))
            entries.append((name, lvl, num_filters))
        self.output_nodes = list(range(len(entries) - len(self.levels), len(entries)))
        self.out_channels = [num_filters] * len(self.levels)

    def forward(self, feats: dict[int, torch.Tensor]) -> list[torch.Tensor]:
        maps = [feats[lvl] for lvl in range(self.min_level, self.input_max + 1)]
        for node in self.nodes:
            maps.append(node([maps[i] for i in node.inputs]))
        return [maps[i] for i in self.output_nodes]
