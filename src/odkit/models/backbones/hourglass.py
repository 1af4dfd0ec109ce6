"""Hourglass networks (TF OD API `models/keras_models/hourglass_network.py`), module names as TF's attributes.

ConvolutionalBlock: zero padding (k-1)/2 + conv without bias + batch norm (epsilon 1e-5, Keras momentum 0.1,
i.e. torch momentum 0.9) + optional ReLU. ResidualBlock: ConvolutionalBlock(3, stride) -> 3x3 conv -> BN, plus
the identity or a 1x1 (strided) conv + BN skip, then ReLU. EncoderDecoderBlock (recursive): encoder_block1 at
full resolution, encoder_block2 downsampling by 2, the inner block, decoder_block, nearest x2 upsampling, add.
HourglassNetwork: input downsampling (7x7/2 conv block + stride-2 residual block: stride 4), `num_hourglasses`
stacked encoder-decoders with an output 3x3 conv block each (every output is a feature map for the heads) and
intermediate 1x1 conv blocks + residual between them.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ConvolutionalBlock(nn.Module):
    def __init__(self, in_ch: int, kernel_size: int, out_channels: int, stride: int = 1, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_channels, kernel_size, stride=stride, padding=(kernel_size - 1) // 2,
                              bias=False)
        nn.init.xavier_uniform_(self.conv.weight)
        self.norm = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.9)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_channels: int, skip_conv: bool = False, stride: int = 1) -> None:
        super().__init__()
        self.conv_block = ConvolutionalBlock(in_ch, 3, out_channels, stride=stride)
        self.conv = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        nn.init.xavier_uniform_(self.conv.weight)
        self.norm = nn.BatchNorm2d(out_channels, eps=1e-5, momentum=0.9)
        self.skip = ConvolutionalBlock(in_ch, 1, out_channels, stride=stride, relu=False) if skip_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net = self.norm(self.conv(self.conv_block(x)))
        return F.relu(net + (self.skip(x) if self.skip is not None else x))


def repeated_residual_blocks(in_ch: int, out_channels: int, num_blocks: int, initial_stride: int = 1,
                             residual_channels: int | None = None, initial_skip_conv: bool = False) -> nn.ModuleList:
    """TF `_make_repeated_residual_blocks`."""
    blocks = []
    residual_channels = residual_channels or out_channels
    ch = in_ch
    for i in range(num_blocks - 1):
        stride = initial_stride if i == 0 else 1
        skip = stride > 1 or (i == 0 and initial_skip_conv)
        blocks.append(ResidualBlock(ch, residual_channels, skip_conv=skip, stride=stride))
        ch = residual_channels
    if num_blocks == 1:
        stride, skip = initial_stride, initial_stride > 1
    else:
        stride, skip = 1, residual_channels != out_channels
    blocks.append(ResidualBlock(ch, out_channels, skip_conv=skip or ch != out_channels, stride=stride))
    return nn.ModuleList(blocks)


def _apply(blocks: nn.ModuleList, x: torch.Tensor) -> torch.Tensor:
    for block in blocks:
        x = block(x)
    return x


class EncoderDecoderBlock(nn.Module):
    def __init__(self, num_stages: int, channel_dims: Sequence[int], blocks_per_stage: Sequence[int],
                 stagewise_downsample: bool = True, encoder_decoder_shortcut: bool = True) -> None:
        super().__init__()
        out, down = channel_dims[0], channel_dims[1]
        self.shortcut = encoder_decoder_shortcut
        if encoder_decoder_shortcut:
            self.encoder_block1 = repeated_residual_blocks(out, out, blocks_per_stage[0], initial_stride=1)
        self.stride = 2 if stagewise_downsample else 1
        self.encoder_block2 = repeated_residual_blocks(out, down, blocks_per_stage[0], initial_stride=self.stride,
                                                       initial_skip_conv=out != down)
        if num_stages > 1:
            self.inner_block = nn.ModuleList([EncoderDecoderBlock(
                num_stages - 1, channel_dims[1:], blocks_per_stage[1:], stagewise_downsample,
                encoder_decoder_shortcut)])
        else:
            self.inner_block = repeated_residual_blocks(down, down, blocks_per_stage[1])
        self.decoder_block = repeated_residual_blocks(down, out, blocks_per_stage[0], residual_channels=down)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        down = _apply(self.decoder_block, _apply(self.inner_block, _apply(self.encoder_block2, x)))
        if self.stride > 1:
            down = F.interpolate(down, scale_factor=float(self.stride), mode="nearest")
        return _apply(self.encoder_block1, x) + down if self.shortcut else down


class HourglassNetwork(nn.Module):
    out_stride = 4

    def __init__(self, num_stages: int, input_channel_dims: int, channel_dims_per_stage: Sequence[int],
                 blocks_per_stage: Sequence[int], num_hourglasses: int) -> None:
        super().__init__()
        c0 = channel_dims_per_stage[0]
        self.num_hourglasses = num_hourglasses
        self.downsample_input = nn.Sequential(ConvolutionalBlock(3, 7, input_channel_dims, stride=2),
                                              ResidualBlock(input_channel_dims, c0, skip_conv=True, stride=2))
        self.hourglass_network = nn.ModuleList([
            EncoderDecoderBlock(num_stages, channel_dims_per_stage, blocks_per_stage)
            for _ in range(num_hourglasses)])
        self.output_conv = nn.ModuleList([ConvolutionalBlock(c0, 3, c0) for _ in range(num_hourglasses)])
        self.intermediate_conv1 = nn.ModuleList([ConvolutionalBlock(c0, 1, c0, relu=False)
                                                 for _ in range(num_hourglasses - 1)])
        self.intermediate_conv2 = nn.ModuleList([ConvolutionalBlock(c0, 1, c0, relu=False)
                                                 for _ in range(num_hourglasses - 1)])
        self.intermediate_residual = nn.ModuleList([ResidualBlock(c0, c0) for _ in range(num_hourglasses - 1)])
        self.out_channels = c0

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.downsample_input(x)
        outputs = []
        for i in range(self.num_hourglasses):
            out = self.output_conv[i](self.hourglass_network[i](x))
            outputs.append(out)
            if i < self.num_hourglasses - 1:
                x = self.intermediate_residual[i](F.relu(self.intermediate_conv1[i](x) + self.intermediate_conv2[i](out)))
        return outputs


def hourglass(name: str) -> HourglassNetwork:
    """TF `center_net_hourglass_feature_extractor.hourglass_{10,20,32,52,104}`."""
    if name == "hourglass_104":
        return HourglassNetwork(5, 128, [256, 256, 384, 384, 384, 512], [2, 2, 2, 2, 2, 4], 2)
    nc, blocks, mult = {
        "hourglass_10": (32, [1, 1], [2, 2]),
        "hourglass_20": (48, [1, 2, 2], [2, 2, 3]),
        "hourglass_32": (48, [2, 2, 2, 2], [2, 2, 3, 3]),
        "hourglass_52": (64, [2, 2, 2, 2, 2, 4], [2, 2, 3, 3, 3, 4]),
    }[name]
    return HourglassNetwork(len(blocks) - 1, nc, [nc * m for m in mult], blocks, 1)
