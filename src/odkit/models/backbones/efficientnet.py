"""EfficientNet-B0..B7 from torchvision (no pretrained weights), endpoints for levels 3..5.

Levels (TF OD API `_EFFICIENTNET_LEVEL_ENDPOINTS`): 3 = stack_2 (features[3]), 4 = stack_4 (features[5]),
5 = stack_6 (features[7]). The classification head conv (features[8]) is dropped.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

_CTORS = {i: getattr(torchvision.models, f"efficientnet_b{i}") for i in range(8)}


class EfficientNetBackbone(nn.Module):
    def __init__(self, variant: int) -> None:
        super().__init__()
        net = _CTORS[variant](weights=None)
        self.features = nn.Sequential(*list(net.features)[:8])
        self._levels = {3: 3, 5: 4, 7: 5}

        def channels(block: nn.Module) -> int:
            return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels

        self.out_channels = {lvl: channels(self.features[i]) for i, lvl in self._levels.items()}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        out: dict[int, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._levels:
                out[self._levels[i]] = x
        return out
