"""ResNet v1 backbones (torchvision resnet50/101/152, no pretrained weights) returning C2..C5.

torchvision puts the stride-2 on the 3x3 conv (v1.5), TF Keras ResNet50 on the first 1x1 conv; parameter
counts are identical.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

DEPTHS = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101, 152: torchvision.models.resnet152}


class ResNetBackbone(nn.Module):
    """C2..C5 of a torchvision ResNet (levels 2..5, strides 4..32)."""

    def __init__(self, depth: int = 50) -> None:
        super().__init__()
        net = DEPTHS[depth](weights=None)
        # torchvision attribute names, so torchvision ImageNet state dicts load under the backbone prefix
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = {2: 256, 3: 512, 4: 1024, 5: 2048}

    def forward(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return {2: c2, 3: c3, 4: c4, 5: c5}
