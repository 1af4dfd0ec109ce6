"""ResNet v1 backbones (50/101/152) returning C2..C5, computing what the TF OD API's Keras ResNet v1
(`models/keras_models/resnet_v1.py`) computes.

The modules are torchvision's (`torchvision.models.resnet*`, no pretrained weights) so torchvision state
dicts load by name, with the TF v1 layout applied by default (`variant="tf"`):
- the stride-2 of the first block of layer2..layer4 sits on the first 1x1 conv (TF/Caffe ResNet v1), not on
  the 3x3 conv (torchvision "v1.5"); the parameter shapes are identical;
- the stem max pool uses TF "SAME" padding (for an even input the extra row/column is at the bottom/right;
  torchvision pads one on each side, which shifts every pooling window by one pixel);
- batch norm epsilon 1e-5 and decay 0.997 (TF `_LayersOverride` defaults; torch momentum 0.003).
`variant="torchvision"` keeps torchvision's v1.5 network unchanged (explicit opt-in, e.g. to fine-tune from
torchvision ImageNet weights with the exact network they were trained in).
`variant="keras"` is `tf.keras.applications.ResNet50/101` as the TF OD API's CenterNet ResNet v1 FPN uses it:
stride on the first 1x1 conv, a bias on every conv, symmetric zero padding (conv1 3 px, pool 1 px: torchvision's
own), batch norm epsilon 1.001e-5 and Keras momentum 0.99.
"""

from __future__ import annotations

import torch
import torchvision
from torch import nn

from odkit.models.hyperparams import SameMaxPool2d

DEPTHS = {50: torchvision.models.resnet50, 101: torchvision.models.resnet101, 152: torchvision.models.resnet152}
VARIANTS = ("tf", "torchvision", "keras")
KERAS_BATCH_NORM_EPSILON = 1.001e-5
TF_BATCH_NORM_DECAY = 0.997
TF_BATCH_NORM_EPSILON = 1e-5


def _stride_on_first_conv(net: nn.Module) -> None:
    for layer in (net.layer2, net.layer3, net.layer4):
        first = layer[0]
        stride = first.conv2.stride
        first.conv1.stride, first.conv2.stride = stride, (1, 1)


def _to_keras(net: nn.Module) -> None:
    _stride_on_first_conv(net)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.bias is None:
            m.bias = nn.Parameter(torch.zeros(m.out_channels))
        elif isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = KERAS_BATCH_NORM_EPSILON, 0.01


def _to_tf_v1(net: nn.Module) -> None:
    _stride_on_first_conv(net)
    net.maxpool = SameMaxPool2d(3, 2)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = TF_BATCH_NORM_EPSILON, 1.0 - TF_BATCH_NORM_DECAY


class ResNetBackbone(nn.Module):
    """C2..C5 of a ResNet v1 (levels 2..5, strides 4..32); `variant` "tf" (default) or "torchvision"."""

    def __init__(self, depth: int = 50, variant: str = "tf") -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown ResNet variant {variant!r}; use one of {VARIANTS}")
        net = DEPTHS[depth](weights=None)
        if variant == "tf":
            _to_tf_v1(net)
        elif variant == "keras":
            _to_keras(net)
        self.depth, self.variant = int(depth), variant
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
