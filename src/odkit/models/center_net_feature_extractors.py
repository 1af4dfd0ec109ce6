"""CenterNet feature extractors (TF OD API `models/center_net_*_feature_extractor.py`).

Interface (used by `odkit.models.center_net.CenterNetMetaArch`):
  preprocess(images [B,3,H,W] 0..255) -> float   TF `CenterNetFeatureExtractor.preprocess` (optional RGB->BGR,
                                                   (x - channel_means) / channel_stds) then the backbone's Keras
                                                   `preprocess_input` (caffe / tf / none)
  forward(x) -> list of num_feature_outputs maps [B, out_channels, H/out_stride, W/out_stride]
  out_channels, out_stride, num_feature_outputs, classification_backbone_prefixes (names under the extractor
  that a `classification` fine-tune restores: TF's `classification_backbone`)

Types:
- `resnet_v1_18_fpn`, `resnet_v1_34_fpn`: the TF OD API's Keras resnet_v1_18/34 (`backbones.resnet_v2`, basic
  pre-activation units), with the FPN below.
- `resnet_v1_50_fpn`, `resnet_v1_101_fpn`: Keras ResNet v1 (`backbones.resnet`, variant "keras"), 1x1 lateral
  convs (256, 128, 64 for C4, C3, C2; 256 on C5), nearest x2 upsampling, add, 3x3 conv (128, 64, 64) + BN + ReLU;
  64 channels at stride 4.
- `resnet_v2_50`, `resnet_v2_101`: Keras ResNet v2 conv5 output, then 3 x (3x3 conv + BN + ReLU, 3x3 stride-2
  transposed conv "same" + BN + ReLU) with 256, 128, 64 filters; 64 channels at stride 4.
- `mobilenet_v2_fpn` (`mobilenet_v2_fpn_sep_conv` = with `use_separable_conv`): the TF OD API's MobileNet v2
  (`depth_multiplier`, applied to the last 1x1 conv too when < 1) taps block_2/5/9_add and out_relu, 1x1 laterals (64 on the top; 64, 32, 24), x2
  upsampling (`upsampling_interpolation` nearest | bilinear), add, 3x3 (separable) conv (32, 24, 24) + BN + ReLU;
  24 channels at stride 4.
- `mobilenet_v2`: MobileNet v2 (`depth_multiplier`) out_relu + the ResNet v2 style upsampling (1x1 convs);
  64 channels at stride 4.
- `hourglass_104` (+ 10/20/32/52): `odkit.models.backbones.hourglass`, 2 outputs (104) at stride 4.
Keras layer defaults: glorot-uniform kernels, zero biases, batch norm epsilon 1e-3 and momentum 0.99.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CAFFE_MEANS_BGR = (103.939, 116.779, 123.68)


def keras_conv(in_ch: int, out_ch: int, kernel: int, *, stride: int = 1, groups: int = 1,
               bias: bool = True) -> nn.Conv2d:
    """Keras Conv2D "same" with stride 1 and an odd kernel (symmetric padding), glorot-uniform, zero bias."""
    conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=(kernel - 1) // 2, groups=groups, bias=bias)
    nn.init.xavier_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def keras_bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=1e-3, momentum=0.01)


class KerasSeparableConv(nn.Sequential):
    """Keras SeparableConv2D (depthwise k x k without bias, pointwise 1x1 with bias), "same", stride 1."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3) -> None:
        super().__init__(keras_conv(in_ch, in_ch, kernel, groups=in_ch, bias=False), keras_conv(in_ch, out_ch, 1))


class KerasConvTranspose2x(nn.Module):
    """Keras Conv2DTranspose(kernel 3, strides 2, "same"): out = 2 x in, TF's alignment (no pad at the top/left)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(in_ch, out_ch, 3, stride=2, padding=0)
        nn.init.xavier_uniform_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2], x.shape[-1]
        return self.conv(x)[..., : 2 * h, : 2 * w]


class CenterNetFeatureExtractor(nn.Module):
    out_channels: int = 64
    out_stride: int = 4
    num_feature_outputs: int = 1
    classification_backbone_prefixes: tuple[str, ...] = ("backbone.",)
    keras_preprocess = "none"  # caffe | tf | none

    def __init__(self, channel_means: Sequence[float] = (), channel_stds: Sequence[float] = (),
                 bgr_ordering: bool = False) -> None:
        super().__init__()
        means = list(channel_means) or [0.0, 0.0, 0.0]
        stds = list(channel_stds) or [1.0, 1.0, 1.0]
        self.register_buffer("channel_means", torch.tensor(means, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.register_buffer("channel_stds", torch.tensor(stds, dtype=torch.float32).view(1, -1, 1, 1),
                             persistent=False)
        self.bgr_ordering = bool(bgr_ordering)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.bgr_ordering:
            x = x.flip(1)
        x = (x - self.channel_means) / self.channel_stds
        if self.keras_preprocess == "caffe":  # keras.applications.resnet: RGB -> BGR, minus ImageNet means
            x = x.flip(1) - x.new_tensor(CAFFE_MEANS_BGR).view(1, 3, 1, 1)
        elif self.keras_preprocess == "tf":  # resnet_v2 / mobilenet_v2: [-1, 1]
            x = x / 127.5 - 1.0
        return x


class ResNetV1FpnExtractor(CenterNetFeatureExtractor):
    keras_preprocess = "caffe"

    def __init__(self, depth: int, **kwargs) -> None:
        super().__init__(**kwargs)
        if depth in (18, 34):  # the TF OD API's own Keras resnet_v1_18/34 (pre-activation basic blocks)
            from odkit.models.backbones.resnet_v2 import ResNetV2Backbone

            self.backbone = ResNetV2Backbone(depth)
            ch = {int(k[-1]): v for k, v in self.backbone.out_channels.items()}
        else:
            from odkit.models.backbones.resnet import ResNetBackbone

            self.backbone = ResNetBackbone(depth, variant="keras")
            ch = self.backbone.out_channels
        self.top = keras_conv(ch[5], 256, 1)
        self.lateral = nn.ModuleList([keras_conv(ch[lvl], f, 1) for lvl, f in ((4, 256), (3, 128), (2, 64))])
        self.smooth = nn.ModuleList([nn.Sequential(keras_conv(f_in, f_out, 3), keras_bn(f_out), nn.ReLU())
                                     for f_in, f_out in ((256, 128), (128, 64), (64, 64))])
        self.out_channels = 64

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c = self.backbone(x)
        if "conv5" in c:
            c = {int(k[-1]): v for k, v in c.items()}
        top = self.top(c[5])
        for lvl, lateral, smooth in zip((4, 3, 2), self.lateral, self.smooth):
            top = F.interpolate(top, scale_factor=2.0, mode="nearest") + lateral(c[lvl])
            top = smooth(top)
        return [top]


class ResNetV2Extractor(CenterNetFeatureExtractor):
    keras_preprocess = "tf"

    def __init__(self, depth: int, **kwargs) -> None:
        super().__init__(**kwargs)
        from odkit.models.backbones.resnet_v2 import ResNetV2Backbone

        self.backbone = ResNetV2Backbone(depth)
        layers: list[nn.Module] = []
        ch = self.backbone.out_channels["conv5"]
        for f in (256, 128, 64):
            layers += [keras_conv(ch, f, 3), keras_bn(f), nn.ReLU(), KerasConvTranspose2x(f, f), keras_bn(f),
                       nn.ReLU()]
            ch = f
        self.upsample = nn.Sequential(*layers)
        self.out_channels = 64

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.upsample(self.backbone(x)["conv5"])]


class MobileNetV2FpnExtractor(CenterNetFeatureExtractor):
    keras_preprocess = "tf"

    def __init__(self, depth_multiplier: float = 1.0, use_separable_conv: bool = False,
                 upsampling_interpolation: str = "nearest", **kwargs) -> None:
        super().__init__(**kwargs)
        if upsampling_interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"upsampling_interpolation {upsampling_interpolation!r}: use nearest or bilinear")
        self.interpolation = upsampling_interpolation
        self.backbone = _tf_od_mobilenet_v2(depth_multiplier, {3: 2, 6: 3, 10: 4, 18: 5})
        ch = self.backbone.out_channels
        self.top = keras_conv(ch[5], 64, 1)
        self.lateral = nn.ModuleList([keras_conv(ch[lvl], f, 1) for lvl, f in ((4, 64), (3, 32), (2, 24))])

        def conv(i: int, o: int) -> nn.Module:
            return KerasSeparableConv(i, o) if use_separable_conv else keras_conv(i, o, 3)

        self.smooth = nn.ModuleList([nn.Sequential(conv(f_in, f_out), keras_bn(f_out), nn.ReLU())
                                     for f_in, f_out in ((64, 32), (32, 24), (24, 24))])
        self.out_channels = 24

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c = self.backbone(x)
        top = self.top(c[5])
        for lvl, lateral, smooth in zip((4, 3, 2), self.lateral, self.smooth):
            if self.interpolation == "nearest":
                up = F.interpolate(top, scale_factor=2.0, mode="nearest")
            else:  # Keras UpSampling2D bilinear = tf.image.resize (half-pixel centres)
                up = F.interpolate(top, scale_factor=2.0, mode="bilinear", align_corners=False)
            top = smooth(up + lateral(c[lvl]))
        return [top]


def _tf_od_mobilenet_v2(depth_multiplier: float, taps: dict[int, int]):
    """The TF OD API's Keras MobileNet v2: alpha < 1 also scales the last 1x1 conv; BN epsilon 1e-3,
    momentum 0.9997."""
    from torchvision.models._utils import _make_divisible

    from odkit.models.backbones.mobilenet_v2 import MobileNetV2Backbone

    last = _make_divisible(1280 * depth_multiplier, 8) if depth_multiplier < 1.0 else None
    backbone = MobileNetV2Backbone(depth_multiplier, last_conv_depth=last, taps=taps)
    for m in backbone.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 1.0 - 0.9997
    return backbone


class MobileNetV2Extractor(CenterNetFeatureExtractor):
    """`mobilenet_v2`: MobileNet v2 out_relu (stride 32), then 3 x (1x1 conv + BN + ReLU, 3x3 stride-2 transposed
    conv "same" + BN + ReLU) with 256, 128, 64 filters; 64 channels at stride 4."""

    keras_preprocess = "tf"

    def __init__(self, depth_multiplier: float = 1.0, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backbone = _tf_od_mobilenet_v2(depth_multiplier, {18: 5})
        layers: list[nn.Module] = []
        ch = self.backbone.out_channels[5]
        for f in (256, 128, 64):
            layers += [keras_conv(ch, f, 1), keras_bn(f), nn.ReLU(), KerasConvTranspose2x(f, f), keras_bn(f),
                       nn.ReLU()]
            ch = f
        self.upsample = nn.Sequential(*layers)
        self.out_channels = 64

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.upsample(self.backbone(x)[5])]


class HourglassExtractor(CenterNetFeatureExtractor):
    classification_backbone_prefixes = ()  # TF's CenterNetHourglassFeatureExtractor has no classification backbone

    def __init__(self, name: str, **kwargs) -> None:
        super().__init__(**kwargs)
        from odkit.models.backbones.hourglass import hourglass

        self.network = hourglass(name)
        self.out_channels = self.network.out_channels
        self.num_feature_outputs = self.network.num_hourglasses

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.network(x)


RESNET_V1_FPN = {"resnet_v1_18_fpn": 18, "resnet_v1_34_fpn": 34, "resnet_v1_50_fpn": 50, "resnet_v1_101_fpn": 101}
RESNET_V2 = {"resnet_v2_50": 50, "resnet_v2_101": 101}
MOBILENET_V2_FPN = ("mobilenet_v2_fpn", "mobilenet_v2_fpn_sep_conv")
MOBILENET_V2 = ("mobilenet_v2",)
HOURGLASS = ("hourglass_10", "hourglass_20", "hourglass_32", "hourglass_52", "hourglass_104")
SUPPORTED = (*RESNET_V1_FPN, *RESNET_V2, *MOBILENET_V2, *MOBILENET_V2_FPN, *HOURGLASS)


def build_center_net_extractor(kind: str, *, channel_means: Sequence[float] = (), channel_stds: Sequence[float] = (),
                               bgr_ordering: bool = False, depth_multiplier: float = 1.0,
                               use_separable_conv: bool = False,
                               upsampling_interpolation: str = "nearest") -> CenterNetFeatureExtractor:
    """TF `CENTER_NET_EXTRACTOR_FUNCTION_MAP[kind](**kwargs)`; the builder refuses the options a type ignores."""
    common = {"channel_means": channel_means, "channel_stds": channel_stds, "bgr_ordering": bgr_ordering}
    if kind in RESNET_V1_FPN:
        return ResNetV1FpnExtractor(RESNET_V1_FPN[kind], **common)
    if kind in RESNET_V2:
        return ResNetV2Extractor(RESNET_V2[kind], **common)
    if kind in MOBILENET_V2_FPN:
        return MobileNetV2FpnExtractor(depth_multiplier, use_separable_conv or kind == "mobilenet_v2_fpn_sep_conv",
                                       upsampling_interpolation, **common)
    if kind in MOBILENET_V2:
        return MobileNetV2Extractor(depth_multiplier, **common)
    if kind in HOURGLASS:
        return HourglassExtractor(kind, **common)
    raise ValueError(f"unknown CenterNet feature extractor {kind!r}")
