"""CenterNet meta-architecture (TF OD API `CenterNetMetaArch`, "Objects as Points") on the `DetectionModel`
contract, with pluggable tasks.

Layout: images -> feature extractor -> `num_feature_outputs` feature maps [B, F, H/s, W/s] (stride s) ->
per-task prediction heads (one head per feature output, TF `make_prediction_net`: `len(num_filters)` x
(conv k x k "same" (separable with `use_depthwise`) + ReLU), then a 1x1 conv; Keras default initialisers,
the last bias filled with `heatmap_bias_init` for heatmaps) -> losses averaged over the feature outputs
(intermediate supervision) / postprocess on the last output only.

prediction_dict (predict): every head's output stacked over the feature outputs,
  "object_center"   float [N_out, B, num_classes, h, w] (logits)
  "box/scale"       float [N_out, B, 2, h, w]   (ObjectDetectionTask; height, width in output pixels)
  "box/offset"      float [N_out, B, 2, h, w]   (ObjectDetectionTask; y, x sub-pixel offsets)
  <task heads>      float [N_out, B, ch, h, w]
  "preprocessed_shape" int64 [2] (H, W of the model input)

loss -> {"Loss/object_center", "Loss/box/scale", "Loss/box/offset", <task losses>} with TF's normalisations
(sum over pixels / (num_outputs * num groundtruth boxes in the batch, at least 1)), valid-pixel weights
(ceil(true_image_shape / stride)), per-task `task_loss_weight`.

postprocess: sigmoid of the last centre heatmap, masked like TF's `mask_from_true_image_shape`, max-pool
peak "NMS" (`peak_max_pool_kernel_size`) and the top `max_box_predictions` over the flattened heatmap
(`odkit.core.heatmap_peaks`), tasks add their outputs (boxes from scale + offset at the peaks, clipped,
normalized to the true image), then the optional `post_processing` NMS (TF `non_max_suppression_fn`,
class-wise or class-agnostic over the multiclass scores). detection_classes are 1-based (float).

Pluggable tasks (the hook for keypoints, masks, ...): a task is a `CenterNetTask` (an nn.Module) given to
`CenterNetMetaArch(tasks=[...])`; the builder (`odkit.builders.center_net_builder`) makes them from the config.
Tasks run in list order; the object detection task comes first so later tasks can use its boxes. A task
  - declares its heads in `head_specs() -> {prediction_key: HeadSpec(num_out, kernel_sizes, num_filters,
    bias_fill)}`; the meta-arch builds them (`make_prediction_net`, one per feature output) into
    `task.heads` (module names: the key with "/" -> "_") and runs them in predict;
  - `loss(predictions, context: LossContext) -> {name: weighted scalar}` ("Loss/" is prefixed by the
    meta-arch; apply the task's `task_loss_weight` inside); LossContext holds the groundtruth dict (see
    docs/ARCHITECTURE.md, plus e.g. "keypoints" / "keypoint_visibilities" for keypoint tasks), input and
    output sizes, stride, valid-pixel weights [B, h*w, 1] and the batch box count (TF
    `get_num_instances_from_weights`);
  - `postprocess(predictions, peaks: Peaks, true_image_shapes, detections) -> None` adds entries to the
    `detections` dict (and may set `peaks.boxes_strided` / read it); entries of shape [B, K, ...] are
    gathered through the optional NMS like TF's `additional_fields`.
A keypoint task (`odkit.models.center_net_keypoints`) plugs in this way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from odkit.core import center_net_targets as targets
from odkit.core.heatmap_peaks import top_k_peaks
from odkit.models.base import DetectionModel

OBJECT_CENTER = "object_center"
BOX_SCALE = "box/scale"
BOX_OFFSET = "box/offset"
NUM_SIZE_CHANNELS = 2
NUM_OFFSET_CHANNELS = 2


@dataclass(frozen=True)
class HeadSpec:
    num_out: int
    kernel_sizes: tuple[int, ...] = (3,)
    num_filters: tuple[int, ...] = (256,)
    bias_fill: float | None = None


def _keras_conv(in_ch: int, out_ch: int, kernel: int, groups: int = 1, bias: bool = True) -> nn.Conv2d:
    conv = nn.Conv2d(in_ch, out_ch, kernel, padding=(kernel - 1) // 2, groups=groups, bias=bias)
    nn.init.xavier_uniform_(conv.weight)  # Keras glorot_uniform (same bound for depthwise kernels)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


class _SameConv(nn.Module):
    """Keras "same" conv, stride 1, any kernel size (even kernels pad one more at the bottom/right)."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv
        k = conv.kernel_size[0]
        self.pad = (k - 1) // 2, k - 1 - (k - 1) // 2
        conv.padding = (0, 0)

    def forward(self, x: Tensor) -> Tensor:
        b, a = self.pad
        if a:
            x = F.pad(x, (b, a, b, a))
        return self.conv(x)


def make_prediction_net(in_channels: int, spec: HeadSpec, use_depthwise: bool = False) -> nn.Sequential:
    """TF `make_prediction_net`: [conv k x k (SeparableConv2D with use_depthwise) + ReLU] * n, then conv 1x1."""
    if len(spec.kernel_sizes) != len(spec.num_filters):
        raise ValueError("kernel_sizes and num_filters must have the same length")
    layers: list[nn.Module] = []
    ch = in_channels
    for k, f in zip(spec.kernel_sizes, spec.num_filters):
        if use_depthwise:
            layers.append(nn.Sequential(_SameConv(_keras_conv(ch, ch, k, groups=ch, bias=False)),
                                        _keras_conv(ch, f, 1)))
        else:
            layers.append(_SameConv(_keras_conv(ch, f, k)))
        layers.append(nn.ReLU())
        ch = f
    out = _keras_conv(ch, spec.num_out, 1)
    if spec.bias_fill is not None:
        nn.init.constant_(out.bias, float(spec.bias_fill))
    layers.append(out)
    return nn.Sequential(*layers)


def module_key(prediction_key: str) -> str:
    return prediction_key.replace("/", "_")


@dataclass
class LossContext:
    groundtruth: dict[str, Tensor]
    input_height: int  # out_height * stride
    input_width: int
    out_height: int
    out_width: int
    stride: int
    valid_pixels: Tensor  # [B, out_h * out_w, 1]
    num_boxes: Tensor  # float scalar, >= 1


@dataclass
class Peaks:
    scores: Tensor  # [B, K]
    y: Tensor  # [B, K] int64, output grid
    x: Tensor
    classes: Tensor  # [B, K] int64, 0-based channel
    num_detections: Tensor  # [B] int
    stride: int
    boxes_strided: Tensor | None = None  # [B, K, 4] output-grid (ymin, xmin, ymax, xmax), set by detection
    extras: dict[str, Tensor] = field(default_factory=dict)


class CenterNetTask(nn.Module):
    """Base of the pluggable CenterNet tasks (see the module docstring)."""

    name: str = "task"

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleDict()

    def head_specs(self) -> dict[str, HeadSpec]:
        raise NotImplementedError

    def loss(self, predictions: dict[str, Tensor], context: LossContext) -> dict[str, Tensor]:
        raise NotImplementedError

    def postprocess(self, predictions: dict[str, Tensor], peaks: Peaks, true_image_shapes: Tensor,
                    detections: dict[str, Tensor]) -> None:
        raise NotImplementedError


def normalize_strided_boxes(boxes: Tensor, stride: int, true_image_shapes: Tensor) -> Tensor:
    """TF `convert_strided_predictions_to_normalized_boxes`: x stride / true image size, clipped to [0, 1]."""
    hw = true_image_shapes[:, :2].to(boxes.dtype).repeat(1, 2)[:, None, :]
    return (boxes * stride / hw).clamp(0.0, 1.0)


def boxes_at_peaks(y: Tensor, x: Tensor, scale: Tensor, offset: Tensor) -> Tensor:
    """TF `prediction_tensors_to_boxes`: [B, K] peak cells + [B, 2, h, w] maps -> [B, K, 4] output-grid boxes."""
    h, w = scale.shape[-2], scale.shape[-1]
    hw = targets.gather_at(scale, y, x).clamp(min=0.0)
    off = targets.gather_at(offset, y, x)
    yc = y.to(off.dtype) + off[..., 0]
    xc = x.to(off.dtype) + off[..., 1]
    ymin = (yc - hw[..., 0] / 2.0).clamp(0.0, float(h))
    xmin = (xc - hw[..., 1] / 2.0).clamp(0.0, float(w))
    ymax = (yc + hw[..., 0] / 2.0).clamp(0.0, float(h))
    xmax = (xc + hw[..., 1] / 2.0).clamp(0.0, float(w))
    return torch.stack([ymin, xmin, ymax, xmax], dim=-1)


class ObjectDetectionTask(CenterNetTask):
    """Box scale + offset heads (TF `ObjectDetectionParams`), L1 (or the configured) loss at box centres."""

    name = "object_detection"

    def __init__(self, localization_loss, scale_loss_weight: float = 0.1, offset_loss_weight: float = 1.0,
                 task_loss_weight: float = 1.0, scale_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,)),
                 offset_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,))) -> None:
        super().__init__()
        self.localization_loss = localization_loss
        self.scale_loss_weight = float(scale_loss_weight)
        self.offset_loss_weight = float(offset_loss_weight)
        self.task_loss_weight = float(task_loss_weight)
        self._specs = {
            BOX_SCALE: HeadSpec(NUM_SIZE_CHANNELS, tuple(scale_head[0]), tuple(scale_head[1])),
            BOX_OFFSET: HeadSpec(NUM_OFFSET_CHANNELS, tuple(offset_head[0]), tuple(offset_head[1])),
        }

    def head_specs(self) -> dict[str, HeadSpec]:
        return dict(self._specs)

    def loss(self, predictions: dict[str, Tensor], context: LossContext) -> dict[str, Tensor]:
        gt = context.groundtruth
        y_idx, x_idx, hw_t, off_t = targets.box_size_offset_targets(gt["boxes"], context.out_height,
                                                                    context.out_width)
        weights = gt["weights"].float()
        scale_preds, offset_preds = predictions[BOX_SCALE].float(), predictions[BOX_OFFSET].float()
        n = scale_preds.shape[0]
        scale_loss = scale_preds.new_zeros(())
        offset_loss = scale_preds.new_zeros(())
        for s, o in zip(scale_preds, offset_preds):
            scale_loss = scale_loss + self.localization_loss(targets.gather_at(s, y_idx, x_idx), hw_t, weights).sum()
            offset_loss = offset_loss + self.localization_loss(targets.gather_at(o, y_idx, x_idx), off_t,
                                                               weights).sum()
        norm = n * context.num_boxes
        w = self.task_loss_weight
        return {BOX_SCALE: w * self.scale_loss_weight * scale_loss / norm,
                BOX_OFFSET: w * self.offset_loss_weight * offset_loss / norm}

    def postprocess(self, predictions: dict[str, Tensor], peaks: Peaks, true_image_shapes: Tensor,
                    detections: dict[str, Tensor]) -> None:
        strided = boxes_at_peaks(peaks.y, peaks.x, predictions[BOX_SCALE][-1].float(),
                                 predictions[BOX_OFFSET][-1].float())
        peaks.boxes_strided = strided
        detections["detection_boxes"] = normalize_strided_boxes(strided, peaks.stride, true_image_shapes)


class CenterNetMetaArch(DetectionModel):
    """Feature extractor + object-centre heads + tasks; TF OD API CenterNet semantics (module docstring).

    feature_extractor: nn.Module with `preprocess(images) -> float`, `forward(x) -> list[Tensor]`,
      `out_channels`, `out_stride`, `num_feature_outputs`, and `classification_backbone_prefixes` (names under
      it restored by a `classification` fine-tune).
    center_loss: classification loss over pixels (penalty-reduced focal loss in the zoo configs).
    nms_fn: optional odkit BatchNonMaxSuppression (`post_processing` in the config).
    """

    def __init__(self, *, num_classes: int, feature_extractor: nn.Module, center_loss,
                 tasks: Sequence[CenterNetTask], object_center_loss_weight: float = 1.0,
                 heatmap_bias_init: float | None = -2.19, min_box_overlap_iou: float = 0.7,
                 max_box_predictions: int = 100, peak_max_pool_kernel_size: int = 3,
                 center_head: tuple[Sequence[int], Sequence[int]] = ((3,), (256,)), use_depthwise: bool = False,
                 nms_fn=None, input_size: tuple[int, int] | None = None) -> None:
        super().__init__()
        self.num_classes = int(num_classes)
        self.feature_extractor = feature_extractor
        self.stride = int(feature_extractor.out_stride)
        self.num_feature_outputs = int(feature_extractor.num_feature_outputs)
        self.center_loss = center_loss
        self.object_center_loss_weight = float(object_center_loss_weight)
        self.min_box_overlap_iou = float(min_box_overlap_iou)
        self.max_box_predictions = int(max_box_predictions)
        self.peak_max_pool_kernel_size = int(peak_max_pool_kernel_size)
        self.use_depthwise = bool(use_depthwise)
        self.nms_fn = nms_fn
        self.input_size = input_size
        in_ch = int(feature_extractor.out_channels)
        center_spec = HeadSpec(self.num_classes, tuple(center_head[0]), tuple(center_head[1]), heatmap_bias_init)
        self.center_heads = self._make_heads(in_ch, center_spec)
        self.tasks = nn.ModuleList(tasks)
        for task in self.tasks:
            for key, spec in task.head_specs().items():
                task.heads[module_key(key)] = self._make_heads(in_ch, spec)
        self.backbone_param_prefixes = tuple(
            f"feature_extractor.{p}" for p in getattr(feature_extractor, "classification_backbone_prefixes", ()))
        self.feature_extractor_param_prefixes = ("feature_extractor.",)

    def _make_heads(self, in_ch: int, spec: HeadSpec) -> nn.ModuleList:
        return nn.ModuleList([make_prediction_net(in_ch, spec, self.use_depthwise)
                              for _ in range(self.num_feature_outputs)])

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: Tensor) -> Tensor:
        return self.feature_extractor.preprocess(images)

    def predict(self, images: Tensor) -> dict[str, Tensor]:
        features = self.feature_extractor(images)
        out: dict[str, Tensor] = {
            OBJECT_CENTER: torch.stack([head(f) for f, head in zip(features, self.center_heads)]),
        }
        for task in self.tasks:
            for key in task.head_specs():
                heads = task.heads[module_key(key)]
                out[key] = torch.stack([head(f) for f, head in zip(features, heads)])
        out["preprocessed_shape"] = torch.tensor([images.shape[-2], images.shape[-1]], dtype=torch.int64,
                                                 device=images.device)
        return out

    def postprocess(self, prediction_dict: dict[str, Tensor], true_image_shapes: Tensor) -> dict[str, Tensor]:
        center = torch.sigmoid(prediction_dict[OBJECT_CENTER][-1].float())  # [B, C, h, w]
        b, _, h, w = center.shape
        true = true_image_shapes.to(center.device)
        # TF `mask_from_true_image_shape` compares output-grid indices with the true image size in input pixels
        rows = (torch.arange(h, device=center.device)[None, :] < true[:, 0:1]).to(center.dtype)
        cols = (torch.arange(w, device=center.device)[None, :] < true[:, 1:2]).to(center.dtype)
        center = center * (rows[:, None, :, None] * cols[:, None, None, :])
        scores, y, x, classes = top_k_peaks(center, self.peak_max_pool_kernel_size, self.max_box_predictions)
        multiclass = targets.gather_at(center, y, x)  # [B, K, C]
        num = (scores > 0).sum(dim=1)
        peaks = Peaks(scores=scores, y=y, x=x, classes=classes, num_detections=num, stride=self.stride)
        detections: dict[str, Tensor] = {}
        for task in self.tasks:
            task.postprocess(prediction_dict, peaks, true, detections)
        if self.nms_fn is not None and "detection_boxes" in detections:
            return self._nms(detections, scores, multiclass, num)
        valid = (torch.arange(scores.shape[1], device=scores.device)[None, :] < num[:, None]).to(scores.dtype)
        detections.update({
            "detection_scores": scores,
            "detection_classes": (classes.to(scores.dtype) + 1.0) * valid,
            "num_detections": num.to(scores.dtype),
            "detection_multiclass_scores": multiclass,
        })
        return detections

    def _nms(self, detections: dict[str, Tensor], scores: Tensor, multiclass: Tensor, num: Tensor) -> dict[str, Tensor]:
        boxes = detections.pop("detection_boxes")
        k = scores.shape[1]
        valid = torch.arange(k, device=scores.device)[None, :] < num[:, None]
        window = boxes.new_tensor([0.0, 0.0, 1.0, 1.0]).expand(boxes.shape[0], 4)
        nms = self.nms_fn(boxes.unsqueeze(2), multiclass * valid[..., None].to(multiclass.dtype), window)
        idx = nms.anchor_indices.clamp(min=0)
        kept = torch.arange(idx.shape[1], device=idx.device)[None, :] < nms.num_detections.to(idx.device)[:, None]
        out: dict[str, Tensor] = {}
        for name, value in detections.items():  # TF `additional_fields`
            if value.dim() >= 2 and value.shape[1] == k:
                g = torch.gather(value, 1, idx.view(*idx.shape, *([1] * (value.dim() - 2))).expand(
                    idx.shape[0], idx.shape[1], *value.shape[2:]))
                out[name] = g * kept.view(*kept.shape, *([1] * (value.dim() - 2))).to(g.dtype)
            else:
                out[name] = value
        mc = torch.gather(multiclass, 1, idx[..., None].expand(-1, -1, multiclass.shape[-1]))
        out.update({
            "detection_boxes": nms.boxes,
            "detection_scores": nms.scores,
            "detection_classes": (nms.classes.to(nms.scores.dtype) + 1.0) * kept.to(nms.scores.dtype),
            "num_detections": nms.num_detections.to(nms.scores.dtype),
            "detection_multiclass_scores": mc * kept[..., None].to(mc.dtype),
        })
        return out

    # ------------------------------------------------------------------ training
    def loss(self, prediction_dict: dict[str, Tensor], groundtruth: dict[str, Tensor],
             true_image_shapes: Tensor | None = None) -> dict[str, Tensor]:
        center_preds = prediction_dict[OBJECT_CENTER].float()  # [N, B, C, h, w]
        n, b, c, h, w = center_preds.shape
        in_h, in_w = h * self.stride, w * self.stride  # the output grid is input // stride (no host sync)
        if true_image_shapes is None:
            true_image_shapes = torch.tensor([[in_h, in_w, 3]], device=center_preds.device).expand(b, 3)
        valid = targets.valid_output_pixels(true_image_shapes.to(center_preds.device), self.stride, h, w)[..., None]
        weights = groundtruth["weights"].float()
        num_boxes = (weights != 0).sum().float().clamp(min=1.0)
        context = LossContext(groundtruth=groundtruth, input_height=in_h, input_width=in_w, out_height=h,
                              out_width=w, stride=self.stride, valid_pixels=valid, num_boxes=num_boxes)
        heatmap = targets.center_heatmap_targets(groundtruth["boxes"], groundtruth["classes"], weights, h, w,
                                                 self.num_classes, self.min_box_overlap_iou)
        flat_target = heatmap.flatten(2).transpose(1, 2)  # [B, h*w, C]
        center_loss = center_preds.new_zeros(())
        for pred in center_preds:
            center_loss = center_loss + self.center_loss(pred.flatten(2).transpose(1, 2), flat_target, valid).sum()
        losses = {OBJECT_CENTER: self.object_center_loss_weight * center_loss / (n * num_boxes)}
        for task in self.tasks:
            losses.update(task.loss(prediction_dict, context))
        return {f"Loss/{k}": v for k, v in losses.items()}
