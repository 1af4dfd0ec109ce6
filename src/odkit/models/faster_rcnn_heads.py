"""Faster R-CNN pieces: TF-compatible crop_and_resize, the RPN head and the MaskRCNN box predictor.

`crop_and_resize(features [B, C, H, W], boxes [B, P, 4] normalized yxyx, crop_size) -> [B*P, C, ch, cw]`
reproduces `tf.image.crop_and_resize` with torchvision `roi_align` (sampling_ratio=1, aligned=True):
TF samples crop row i at y = y1 * (H - 1) + i * (y2 - y1) * (H - 1) / (ch - 1) (bilinear, pixel centres
at integer coordinates; a crop of size 1 samples the box centre). roi_align samples bin centres
start + (i + 0.5) * len / ch (after its -0.5 alignment shift), so the box handed to roi_align is
start = y_0 - 0.5 * step + 0.5, len = ch * step with step the TF sample spacing. Points inside the
feature map match exactly; TF's extrapolation value (0) for points outside [0, H-1] is not reproduced
(roi_align clamps to the border within one pixel), which never happens for boxes clipped to the image.

`RPNHead(in_channels, depth, kernel_size, num_anchors_per_level, hp, atrous_rate)`: conv (+bn) + relu6
("RPNConv", shared by all levels), then per level 1x1 box (4 per anchor) and objectness (2 per anchor:
background, object) convs. `forward(list of feature maps) -> (box_encodings [B, A, 4], objectness [B, A, 2])`
in TF anchor order (level, y, x, anchor).
`multilevel_crop_and_resize(features, boxes, crop_size, image_hw)`: FPN level per box (TF
`fpn_feature_levels`, unit_scale_index = levels - 2, image_ratio = sqrt(H*W) / 224) then crop_and_resize.

`MaskRCNNBoxPredictor(in_channels, num_classes, fc_hp, use_dropout, dropout_keep_probability,
share_box_across_classes, box_code_size=4)`: spatial mean -> (dropout) -> FC (+bn) for box encodings
`[N, 1 or num_classes, 4]` and class logits `[N, num_classes + 1]`.

`MaskRCNNMaskHead(in_channels, num_classes, hp, mask_height, mask_width, num_conv_layers, conv_depth,
class_agnostic, convolve_then_upsample)` (TF `keras_mask_head.MaskRCNNMaskHead`): box classifier features
`[N, C, h, w]` -> mask logits `[N, 1 or num_classes, mask_height, mask_width]`. Without
convolve_then_upsample the features are first resized bilinearly (align_corners, TF resize_bilinear) to the
mask size; then num_conv_layers - 1 3x3 conv (+bn) + activation; with convolve_then_upsample a nearest
upsampling by (mask_height // h, mask_width // w) and one more 3x3 conv (+bn) + activation; last a 3x3 conv
with bias to the masks. conv_depth 0 = TF's automatic depth (`mask_conv_depth`).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torchvision.ops import roi_align

from odkit.models.hyperparams import (
    L2_ATTR,
    ConvHyperparams,
    batch_norm_layer,
    conv2d,
    init_weight,
)


def crop_and_resize(
    features: torch.Tensor,
    boxes: torch.Tensor,
    crop_size: tuple[int, int],
    box_indices: torch.Tensor | None = None,
) -> torch.Tensor:
    """TF `crop_and_resize` of normalized `[ymin, xmin, ymax, xmax]` boxes `[B, P, 4]` -> `[B*P, C, ch, cw]`.

    `box_indices` ([B*P], optional): the feature-map row of each box (TF box_ind); default: box (b, p)
    crops row b."""
    b, p, _ = boxes.shape
    h, w = features.shape[-2], features.shape[-1]
    ch, cw = crop_size
    boxes = boxes.float()  # box coordinates stay float32 (bf16 would move crops by ~1 px)
    y1, x1, y2, x2 = boxes.unbind(-1)
    ys = y1 * (h - 1)
    xs = x1 * (w - 1)
    if ch > 1:
        step_y = (y2 - y1) * (h - 1) / (ch - 1)
    else:
        ys = 0.5 * (y1 + y2) * (h - 1)
        step_y = torch.zeros_like(ys)
    if cw > 1:
        step_x = (x2 - x1) * (w - 1) / (cw - 1)
    else:
        xs = 0.5 * (x1 + x2) * (w - 1)
        step_x = torch.zeros_like(xs)
    # roi_align (aligned=True) samples start - 0.5 + (i + 0.5) * len / n
    start_y = ys - 0.5 * step_y + 0.5
    start_x = xs - 0.5 * step_x + 0.5
    rois = torch.stack([start_x, start_y, start_x + cw * step_x, start_y + ch * step_y], dim=-1).reshape(
        -1, 4
    )
    if box_indices is None:
        idx = torch.arange(b, device=boxes.device, dtype=torch.float32).repeat_interleave(p).unsqueeze(1)
    else:
        idx = box_indices.reshape(-1, 1).to(device=boxes.device, dtype=torch.float32)
    crops = roi_align(
        features.float(),
        torch.cat([idx, rois], dim=1),
        (ch, cw),
        spatial_scale=1.0,
        sampling_ratio=1,
        aligned=True,
    )
    return crops.to(features.dtype)


class RPNHead(nn.Module):
    """First-stage box predictor (TF: RPNConv shared over levels + ConvolutionalBoxPredictor with one class,
    kernel 1, one box / objectness head per feature map)."""

    def __init__(
        self,
        in_channels: int,
        depth: int,
        kernel_size: int,
        num_anchors: int | list[int],
        hp: ConvHyperparams,
        atrous_rate: int = 1,
    ) -> None:
        super().__init__()
        conv = conv2d(in_channels, depth, kernel_size, hp, bias=None)
        if atrous_rate > 1:
            conv = nn.Conv2d(
                in_channels,
                depth,
                kernel_size,
                padding=atrous_rate * (kernel_size - 1) // 2,
                dilation=atrous_rate,
                bias=hp.use_bias,
            )
            init_weight(conv.weight, hp.initializer)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            setattr(conv, L2_ATTR, float(hp.l2_weight))
        layers: list[nn.Module] = [conv]
        if hp.batch_norm is not None:
            layers.append(batch_norm_layer(depth, hp.batch_norm))
        layers.append(nn.ReLU6())
        self.conv = nn.Sequential(*layers)
        counts = [num_anchors] if isinstance(num_anchors, int) else list(num_anchors)
        self.num_anchors = counts
        self.box = nn.ModuleList([conv2d(depth, k * 4, 1, hp, bias=True) for k in counts])
        self.objectness = nn.ModuleList([conv2d(depth, k * 2, 1, hp, bias=True) for k in counts])

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        boxes, objs = [], []
        for f, box_head, obj_head in zip(features, self.box, self.objectness):
            x = self.conv(f)
            b = x.shape[0]
            boxes.append(box_head(x).permute(0, 2, 3, 1).reshape(b, -1, 4))
            objs.append(obj_head(x).permute(0, 2, 3, 1).reshape(b, -1, 2))
        return torch.cat(boxes, dim=1), torch.cat(objs, dim=1)


def fpn_feature_levels(
    num_levels: int, unit_scale_index: int, image_ratio: float | torch.Tensor, boxes: torch.Tensor
) -> torch.Tensor:
    """TF `ops.fpn_feature_levels`: level index per normalized box [B, P] (int64):
    clamp(floor(log(sqrt(area) * image_ratio) / log 2) + unit_scale_index, 0, num_levels - 1).
    TF floors (`tf.floordiv`) before the int cast, so boxes smaller than the unit scale go one level down
    (truncation toward zero would keep them one level up)."""
    hw = (boxes[..., 2:4] - boxes[..., 0:2]).clamp(min=0)
    areas_sqrt = torch.sqrt(hw[..., 0] * hw[..., 1])
    log2 = torch.floor(torch.log2(image_ratio * areas_sqrt).clamp(min=-64.0))
    return (unit_scale_index + log2).clamp(0, num_levels - 1).to(torch.int64)


def multilevel_crop_and_resize(
    features: list[torch.Tensor],
    boxes: torch.Tensor,
    crop_size: tuple[int, int],
    image_hw: tuple[int, int] | torch.Tensor,
) -> torch.Tensor:
    """Crop each box from its FPN level (TF `_compute_second_stage_input_feature_maps` with several levels:
    unit_scale_index = num_levels - 2, image_ratio = sqrt(H * W) / 224). One level: plain crop_and_resize."""
    if len(features) == 1:
        return crop_and_resize(features[0], boxes, crop_size)
    n = len(features)
    if isinstance(image_hw, torch.Tensor):  # stays on device (no host sync)
        ratio = torch.sqrt(image_hw[0].float() * image_hw[1].float()) / 224.0
    else:
        ratio = (image_hw[0] * image_hw[1]) ** 0.5 / 224.0
    levels = fpn_feature_levels(n, n - 2, ratio, boxes.float()).reshape(-1)  # [B*P]
    out = None
    for i, f in enumerate(features):  # every level crops every box; the box's level is kept (sync-free)
        crops = crop_and_resize(f, boxes, crop_size)
        mask = (levels == i).view(-1, 1, 1, 1).to(crops.dtype)
        out = crops * mask if out is None else out + crops * mask
    return out


class _FC(nn.Module):
    def __init__(self, in_features: int, out_features: int, hp: ConvHyperparams) -> None:
        super().__init__()
        self.linear = nn.Linear(in_features, out_features, bias=hp.use_bias)
        init_weight(self.linear.weight.view(out_features, in_features, 1, 1), hp.initializer)
        if self.linear.bias is not None:
            nn.init.zeros_(self.linear.bias)
        setattr(self.linear, L2_ATTR, float(hp.l2_weight))
        self.bn = None
        if hp.batch_norm is not None:
            p = hp.batch_norm
            self.bn = nn.BatchNorm1d(out_features, eps=p.epsilon, momentum=1.0 - p.decay)
            if not p.scale:
                self.bn.weight.requires_grad_(False)
            if not p.center:
                self.bn.bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.linear(x)
        return self.bn(x) if self.bn is not None else x


class MaskRCNNBoxPredictor(nn.Module):
    """Second-stage box predictor (TF `MaskRCNNBoxPredictor`, box and class heads only)."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        fc_hp: ConvHyperparams,
        use_dropout: bool = False,
        dropout_keep_probability: float = 0.5,
        share_box_across_classes: bool = False,
        box_code_size: int = 4,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.use_dropout = bool(use_dropout)  # TF keeps a Dropout layer (and its index) even at keep 1.0
        self.num_boxes = 1 if share_box_across_classes else num_classes
        self.box_code_size = box_code_size
        rate = 1.0 - dropout_keep_probability
        self.box_dropout = nn.Dropout(rate) if use_dropout and rate > 0 else nn.Identity()
        self.class_dropout = nn.Dropout(rate) if use_dropout and rate > 0 else nn.Identity()
        self.box_fc = _FC(in_channels, self.num_boxes * box_code_size, fc_hp)
        self.class_fc = _FC(in_channels, num_classes + 1, fc_hp)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = features.mean(dim=(2, 3))
        box = self.box_fc(self.box_dropout(pooled)).view(-1, self.num_boxes, self.box_code_size)
        cls = self.class_fc(self.class_dropout(pooled))
        return box, cls


def mask_conv_depth(num_feature_channels: int, num_classes: int) -> int:
    """TF `MaskRCNNMaskHead._get_mask_predictor_conv_depth` (class weight 3, feature weight 2, log2 space)."""
    log_f = math.log(float(num_feature_channels), 2.0)
    log_c = math.log(float(num_classes), 2.0)
    return int(math.pow(2.0, round((log_f * 2.0 + log_c * 3.0) / 5.0)))


class MaskRCNNMaskHead(nn.Module):
    """Third-stage mask head (TF `MaskRCNNMaskHead`): features [N, C, h, w] -> logits [N, q, mh, mw]."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        hp: ConvHyperparams,
        mask_height: int = 15,
        mask_width: int = 15,
        num_conv_layers: int = 2,
        conv_depth: int = 256,
        class_agnostic: bool = False,
        convolve_then_upsample: bool = False,
    ) -> None:
        super().__init__()
        from odkit.models.hyperparams import ConvBnAct

        depth = conv_depth or mask_conv_depth(in_channels, num_classes)
        self.mask_size = (int(mask_height), int(mask_width))
        self.convolve_then_upsample = bool(convolve_then_upsample)
        self.num_masks = 1 if class_agnostic else int(num_classes)
        layers: list[nn.Module] = []
        ch = in_channels
        for _ in range(num_conv_layers - 1):
            layers.append(ConvBnAct(ch, depth, 3, hp))
            ch = depth
        self.convs = nn.Sequential(*layers)
        self.upsample_conv: nn.Module = nn.Identity()
        if self.convolve_then_upsample:
            self.upsample_conv = ConvBnAct(ch, depth, 3, hp)
            ch = depth
        self.last = conv2d(ch, self.num_masks, 3, hp, bias=True)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        x = features
        if not self.convolve_then_upsample:
            x = nn.functional.interpolate(x, size=self.mask_size, mode="bilinear", align_corners=True)
        x = self.convs(x)
        if self.convolve_then_upsample:
            sy, sx = self.mask_size[0] // int(x.shape[2]), self.mask_size[1] // int(x.shape[3])
            x = x.repeat_interleave(sy, dim=2).repeat_interleave(sx, dim=3)  # TF nearest_neighbor_upsampling
            x = self.upsample_conv(x)
        return self.last(x)
