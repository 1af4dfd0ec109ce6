"""Anchor generators (TF OD API `anchor_generators/*`), TF anchor order: level, y, x, anchor-at-location.

All generators: `num_anchors_per_location() -> list[int]` (one per feature map) and
`generate(feature_map_shapes: list[tuple[int, int]], im_height: int, im_width: int, device=None)
-> Tensor[A, 4]` (float32, `[ymin, xmin, ymax, xmax]`), cached per (shapes, image size, device).

- `GridAnchorGenerator(scales, aspect_ratios, base_anchor_size=(256, 256), anchor_stride=(16, 16),
  anchor_offset=(0, 0))`: one feature map, absolute pixel coordinates (Faster R-CNN first stage).
- `MultipleGridAnchorGenerator(box_specs_list, base_anchor_size, anchor_strides, anchor_offsets)` and
  `ssd_anchor_generator(num_layers, min_scale, max_scale, scales, aspect_ratios,
  interpolated_scale_aspect_ratio, base_anchor_size, anchor_strides, anchor_offsets,
  reduce_boxes_in_lowest_layer)` (TF `create_ssd_anchors`): normalized coordinates.
- `MultiscaleGridAnchorGenerator(min_level, max_level, anchor_scale, aspect_ratios, scales_per_octave,
  normalize_coordinates=True)` (RetinaNet / SSD-FPN).
- `FlexibleGridAnchorGenerator(base_sizes, aspect_ratios, anchor_strides, anchor_offsets,
  normalize_coordinates=True)`.
Within a location, the basis boxes follow TF: GridAnchorGenerator and Multiscale put scale fastest,
then aspect ratio; the box-spec generators keep the spec order.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def tile_anchors(
    grid_height: int,
    grid_width: int,
    scales: Sequence[float],
    aspect_ratios: Sequence[float],
    base_anchor_size: tuple[float, float],
    anchor_stride: tuple[float, float],
    anchor_offset: tuple[float, float],
    device: torch.device | str | None = None,
) -> Tensor:
    """TF `tile_anchors`: `[grid_height * grid_width * K, 4]`, K = len(scales) = len(aspect_ratios)."""
    scales_t = torch.tensor(scales, dtype=torch.float32, device=device)
    ratios = torch.sqrt(torch.tensor(aspect_ratios, dtype=torch.float32, device=device))
    heights = scales_t / ratios * float(base_anchor_size[0])
    widths = scales_t * ratios * float(base_anchor_size[1])
    ys = torch.arange(grid_height, dtype=torch.float32, device=device) * float(anchor_stride[0]) + float(
        anchor_offset[0]
    )
    xs = torch.arange(grid_width, dtype=torch.float32, device=device) * float(anchor_stride[1]) + float(
        anchor_offset[1]
    )
    k = scales_t.numel()
    yc = ys.view(-1, 1, 1).expand(grid_height, grid_width, k)
    xc = xs.view(1, -1, 1).expand(grid_height, grid_width, k)
    h = heights.view(1, 1, -1).expand(grid_height, grid_width, k)
    w = widths.view(1, 1, -1).expand(grid_height, grid_width, k)
    boxes = torch.stack([yc - 0.5 * h, xc - 0.5 * w, yc + 0.5 * h, xc + 0.5 * w], dim=-1)
    return boxes.reshape(-1, 4)


def _meshgrid_flat(
    scales: Sequence[float], aspect_ratios: Sequence[float]
) -> tuple[list[float], list[float]]:
    """TF `ops.meshgrid(scales, aspect_ratios)` flattened: scale varies fastest."""
    s = [float(x) for _ in aspect_ratios for x in scales]
    a = [float(r) for r in aspect_ratios for _ in scales]
    return s, a


class AnchorGenerator:
    """Base class with a small per-(shapes, image size, device) cache."""

    def __init__(self) -> None:
        self._cache: dict[tuple, Tensor] = {}

    def num_anchors_per_location(self) -> list[int]:
        raise NotImplementedError

    def _generate(
        self, feature_map_shapes: list[tuple[int, int]], im_height: int, im_width: int, device
    ) -> Tensor:
        raise NotImplementedError

    def generate(
        self,
        feature_map_shapes: Sequence[tuple[int, int]],
        im_height: int = 1,
        im_width: int = 1,
        device: torch.device | str | None = None,
    ) -> Tensor:
        shapes = [(int(h), int(w)) for h, w in feature_map_shapes]
        expected = len(self.num_anchors_per_location())
        if len(shapes) != expected:
            raise ValueError(f"{type(self).__name__} expects {expected} feature maps, got {len(shapes)}")
        key = (tuple(shapes), int(im_height), int(im_width), str(torch.device(device or "cpu")))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._generate(shapes, int(im_height), int(im_width), device).contiguous()
            if len(self._cache) > 16:
                self._cache.clear()
            self._cache[key] = cached
        return cached

    def num_anchors(self, feature_map_shapes: Sequence[tuple[int, int]]) -> int:
        return sum(k * h * w for k, (h, w) in zip(self.num_anchors_per_location(), feature_map_shapes))


class GridAnchorGenerator(AnchorGenerator):
    """TF `GridAnchorGenerator`: single feature map, absolute coordinates."""

    def __init__(
        self,
        scales: Sequence[float] = (0.5, 1.0, 2.0),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
        base_anchor_size: Sequence[float] = (256.0, 256.0),
        anchor_stride: Sequence[float] = (16.0, 16.0),
        anchor_offset: Sequence[float] = (0.0, 0.0),
    ) -> None:
        super().__init__()
        self.scales, self.aspect_ratios = _meshgrid_flat(scales, aspect_ratios)
        self.base_anchor_size = (float(base_anchor_size[0]), float(base_anchor_size[1]))
        self.anchor_stride = (float(anchor_stride[0]), float(anchor_stride[1]))
        self.anchor_offset = (float(anchor_offset[0]), float(anchor_offset[1]))

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.scales)]

    def _generate(self, feature_map_shapes, im_height, im_width, device) -> Tensor:
        ((h, w),) = feature_map_shapes
        return tile_anchors(
            h,
            w,
            self.scales,
            self.aspect_ratios,
            self.base_anchor_size,
            self.anchor_stride,
            self.anchor_offset,
            device,
        )


class MultipleGridAnchorGenerator(AnchorGenerator):
    """TF `MultipleGridAnchorGenerator`: per-layer (scale, aspect ratio) specs, normalized output.

    Strides/offsets are in pixels (divided by the image size); without them stride = 1 / grid size and
    offset = stride / 2. `base_anchor_size` is scaled by min(im_h, im_w) / im_h (resp. / im_w).
    """

    def __init__(
        self,
        box_specs_list: Sequence[Sequence[tuple[float, float]]],
        base_anchor_size: Sequence[float] = (1.0, 1.0),
        anchor_strides: Sequence[tuple[float, float]] | None = None,
        anchor_offsets: Sequence[tuple[float, float]] | None = None,
    ) -> None:
        super().__init__()
        self.box_specs = [[(float(s), float(a)) for s, a in layer] for layer in box_specs_list]
        self.base_anchor_size = (float(base_anchor_size[0]), float(base_anchor_size[1]))
        for arg, name in ((anchor_strides, "anchor_strides"), (anchor_offsets, "anchor_offsets")):
            if arg and len(arg) != len(self.box_specs):
                raise ValueError(f"{name} must have one (y, x) pair per layer ({len(self.box_specs)})")
        self.anchor_strides = list(anchor_strides) if anchor_strides else None
        self.anchor_offsets = list(anchor_offsets) if anchor_offsets else None

    def num_anchors_per_location(self) -> list[int]:
        return [len(layer) for layer in self.box_specs]

    def _generate(self, feature_map_shapes, im_height, im_width, device) -> Tensor:
        imh, imw = float(im_height), float(im_width)
        if self.anchor_strides:
            strides = [(sy / imh, sx / imw) for sy, sx in self.anchor_strides]
        else:
            strides = [(1.0 / h, 1.0 / w) for h, w in feature_map_shapes]
        if self.anchor_offsets:
            offsets = [(oy / imh, ox / imw) for oy, ox in self.anchor_offsets]
        else:
            offsets = [(0.5 * sy, 0.5 * sx) for sy, sx in strides]
        min_dim = min(imh, imw)
        base = (min_dim / imh * self.base_anchor_size[0], min_dim / imw * self.base_anchor_size[1])
        out = []
        for (h, w), specs, stride, offset in zip(feature_map_shapes, self.box_specs, strides, offsets):
            scales = [s for s, _ in specs]
            ratios = [a for _, a in specs]
            out.append(tile_anchors(h, w, scales, ratios, base, stride, offset, device))
        return torch.cat(out, dim=0)


def ssd_anchor_generator(
    num_layers: int = 6,
    min_scale: float = 0.2,
    max_scale: float = 0.95,
    scales: Sequence[float] | None = None,
    aspect_ratios: Sequence[float] = (1.0, 2.0, 3.0, 1.0 / 2, 1.0 / 3),
    interpolated_scale_aspect_ratio: float = 1.0,
    base_anchor_size: Sequence[float] | None = None,
    anchor_strides: Sequence[tuple[float, float]] | None = None,
    anchor_offsets: Sequence[tuple[float, float]] | None = None,
    reduce_boxes_in_lowest_layer: bool = True,
) -> MultipleGridAnchorGenerator:
    """TF `create_ssd_anchors` (proto `SsdAnchorGenerator`)."""
    if base_anchor_size is None:
        base_anchor_size = (1.0, 1.0)
    if scales:
        scale_list = [float(s) for s in scales] + [1.0]
    else:
        if num_layers < 2:
            scale_list = [float(min_scale), 1.0]
        else:
            scale_list = [
                min_scale + (max_scale - min_scale) * i / (num_layers - 1) for i in range(num_layers)
            ]
            scale_list.append(1.0)
    specs: list[list[tuple[float, float]]] = []
    for layer, scale, scale_next in zip(range(num_layers), scale_list[:-1], scale_list[1:]):
        if layer == 0 and reduce_boxes_in_lowest_layer:
            layer_specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            layer_specs = [(scale, float(a)) for a in aspect_ratios]
            if interpolated_scale_aspect_ratio > 0.0:
                layer_specs.append((math.sqrt(scale * scale_next), float(interpolated_scale_aspect_ratio)))
        specs.append(layer_specs)
    return MultipleGridAnchorGenerator(specs, base_anchor_size, anchor_strides, anchor_offsets)


SsdAnchorGenerator = ssd_anchor_generator


class MultiscaleGridAnchorGenerator(AnchorGenerator):
    """TF `MultiscaleGridAnchorGenerator`: levels min..max, stride 2**level, base 2**level * anchor_scale.

    Offset is stride / 2 along a dimension when the image size is divisible by the stride, else 0.
    """

    def __init__(
        self,
        min_level: int = 3,
        max_level: int = 7,
        anchor_scale: float = 4.0,
        aspect_ratios: Sequence[float] = (1.0, 2.0, 0.5),
        scales_per_octave: int = 2,
        normalize_coordinates: bool = True,
    ) -> None:
        super().__init__()
        if max_level < min_level:
            raise ValueError("max_level must be >= min_level")
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.anchor_scale = float(anchor_scale)
        self.aspect_ratios_in = [float(a) for a in aspect_ratios]
        self.scales_per_octave = int(scales_per_octave)
        self.normalize_coordinates = bool(normalize_coordinates)
        octave_scales = [2 ** (i / self.scales_per_octave) for i in range(self.scales_per_octave)]
        self.scales, self.aspect_ratios = _meshgrid_flat(octave_scales, self.aspect_ratios_in)

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.scales)] * (self.max_level - self.min_level + 1)

    def _generate(self, feature_map_shapes, im_height, im_width, device) -> Tensor:
        out = []
        for level, (h, w) in zip(range(self.min_level, self.max_level + 1), feature_map_shapes):
            stride = float(2**level)
            base = stride * self.anchor_scale
            offset = (
                stride / 2.0 if im_height % stride == 0 else 0.0,
                stride / 2.0 if im_width % stride == 0 else 0.0,
            )
            boxes = tile_anchors(
                h, w, self.scales, self.aspect_ratios, (base, base), (stride, stride), offset, device
            )
            if self.normalize_coordinates:
                boxes = boxes / boxes.new_tensor([im_height, im_width, im_height, im_width])
            out.append(boxes)
        return torch.cat(out, dim=0)


class FlexibleGridAnchorGenerator(AnchorGenerator):
    """TF `FlexibleGridAnchorGenerator`: per layer absolute base sizes zipped with aspect ratios."""

    def __init__(
        self,
        base_sizes: Sequence[Sequence[float]],
        aspect_ratios: Sequence[Sequence[float]],
        anchor_strides: Sequence[tuple[float, float]],
        anchor_offsets: Sequence[tuple[float, float]],
        normalize_coordinates: bool = True,
    ) -> None:
        super().__init__()
        n = len(base_sizes)
        if not (len(aspect_ratios) == len(anchor_strides) == len(anchor_offsets) == n):
            raise ValueError("base_sizes, aspect_ratios, strides and offsets need one entry per layer")
        for sizes, ratios in zip(base_sizes, aspect_ratios):
            if len(sizes) != len(ratios):
                raise ValueError("each anchor_grid needs as many base_sizes as aspect_ratios")
        self.base_sizes = [[float(s) for s in layer] for layer in base_sizes]
        self.aspect_ratios = [[float(a) for a in layer] for layer in aspect_ratios]
        self.anchor_strides = [(float(a), float(b)) for a, b in anchor_strides]
        self.anchor_offsets = [(float(a), float(b)) for a, b in anchor_offsets]
        self.normalize_coordinates = bool(normalize_coordinates)

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) for s in self.base_sizes]

    def _generate(self, feature_map_shapes, im_height, im_width, device) -> Tensor:
        out = []
        for (h, w), sizes, ratios, stride, offset in zip(
            feature_map_shapes, self.base_sizes, self.aspect_ratios, self.anchor_strides, self.anchor_offsets
        ):
            boxes = tile_anchors(h, w, sizes, ratios, (1.0, 1.0), stride, offset, device)
            if self.normalize_coordinates:
                boxes = boxes / boxes.new_tensor([im_height, im_width, im_height, im_width])
            out.append(boxes)
        return torch.cat(out, dim=0)
