"""The unit the augmentation ops work on: one image with its boxes and per-box fields (keypoints included)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

BOX_FIELDS = ("labels", "weights", "difficult", "group_of", "is_crowd", "area", "keypoints", "keypoint_visibilities",
              "masks")
KEYPOINTS = "keypoints"  # float32 [N, K, 2] normalized (y, x); NaN = not labelled / pruned (TF's convention)
KEYPOINT_VISIBILITIES = "keypoint_visibilities"  # bool [N, K]
MASKS = "masks"  # uint8 [N, H, W] 0/1 instance masks in the image frame (they move with the image)


@dataclass
class Sample:
    """One training example inside the input pipeline.

    image: [3, H, W] uint8 or float32 in [0, 255] (RGB).
    boxes: float32 [N, 4] normalized ymin, xmin, ymax, xmax.
    fields: per-box tensors with first dim N (labels int64, weights float32, difficult/group_of bool,
    keypoints float32 [N, K, 2] (y, x) with NaN where not labelled, keypoint_visibilities bool [N, K]).
    """

    image: torch.Tensor
    boxes: torch.Tensor
    fields: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def height(self) -> int:
        return int(self.image.shape[-2])

    @property
    def width(self) -> int:
        return int(self.image.shape[-1])

    @property
    def labels(self) -> torch.Tensor:
        return self.fields["labels"]

    @property
    def keypoints(self) -> torch.Tensor | None:
        return self.fields.get(KEYPOINTS)

    def map_masks(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Apply the image's geometric transform ``fn`` ([C, H, W] -> [C, H', W']) to the masks too."""
        m = self.fields.get(MASKS)
        if m is not None:
            self.fields[MASKS] = fn(m)

    def keep(self, index: torch.Tensor) -> None:
        """Keep the boxes selected by a bool mask or an index tensor (and their fields)."""
        self.boxes = self.boxes[index]
        self.fields = {k: v[index] for k, v in self.fields.items()}

    def float_image(self) -> torch.Tensor:
        if self.image.dtype != torch.float32:
            self.image = self.image.to(torch.float32)
        return self.image

    def clone(self) -> Sample:
        return Sample(self.image.clone(), self.boxes.clone(), {k: v.clone() for k, v in self.fields.items()})


def make_sample(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor,
                weights: torch.Tensor | None = None, **extra: torch.Tensor) -> Sample:
    """Build a Sample; weights default to 1.0."""
    boxes = boxes.to(torch.float32).reshape(-1, 4)
    n = boxes.shape[0]
    fields = {"labels": labels.to(torch.int64).reshape(n)}
    fields["weights"] = (torch.ones(n) if weights is None else weights.to(torch.float32).reshape(n))
    for k, v in extra.items():
        fields[k] = v.reshape(n, *v.shape[1:]) if k in (KEYPOINTS, KEYPOINT_VISIBILITIES, MASKS) else v.reshape(n)
    return Sample(image, boxes, fields)


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """Round and clamp a [0, 255] float image to uint8 (uint8 passes through)."""
    if image.dtype == torch.uint8:
        return image
    return image.round().clamp_(0, 255).to(torch.uint8)


# ---- box list ops (TF OD API box_list_ops semantics, normalized yxyx) ----

def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def intersection(boxes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Area of each box inside one window [4]."""
    ymin = torch.maximum(boxes[:, 0], window[0])
    xmin = torch.maximum(boxes[:, 1], window[1])
    ymax = torch.minimum(boxes[:, 2], window[2])
    xmax = torch.minimum(boxes[:, 3], window[3])
    return (ymax - ymin).clamp(min=0) * (xmax - xmin).clamp(min=0)


def ioa_in_window(boxes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Fraction of each box's area inside the window (box_list_ops.ioa(window, boxes))."""
    area = box_area(boxes)
    inter = intersection(boxes, window)
    return torch.where(area > 0, inter / area.clamp(min=1e-12), torch.zeros_like(area))


def outside_window(boxes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """True for boxes completely outside the window (prune_completely_outside_window)."""
    return ((boxes[:, 0] >= window[2]) | (boxes[:, 2] <= window[0])
            | (boxes[:, 1] >= window[3]) | (boxes[:, 3] <= window[1]))


def change_coordinate_frame(boxes: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Express boxes relative to window [ymin, xmin, ymax, xmax]."""
    h = window[2] - window[0]
    w = window[3] - window[1]
    origin = torch.stack([window[0], window[1], window[0], window[1]])
    scale = torch.stack([h, w, h, w])
    return (boxes - origin) / scale


def clip_unit(boxes: torch.Tensor) -> torch.Tensor:
    return boxes.clamp(0.0, 1.0)


# ---- keypoint ops (TF OD API core/keypoint_ops.py semantics, normalized [N, K, 2] (y, x)) ----

def keypoints_change_frame(keypoints: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """keypoint_ops.change_coordinate_frame: express keypoints relative to window [ymin, xmin, ymax, xmax]."""
    origin = torch.stack([window[0], window[1]])
    size = torch.stack([window[2] - window[0], window[3] - window[1]])
    return (keypoints - origin) / size


def keypoints_prune_outside(keypoints: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """keypoint_ops.prune_outside_window: keypoints outside the window (bounds included) become NaN."""
    y, x = keypoints[..., 0], keypoints[..., 1]
    inside = (y >= window[0]) & (y <= window[2]) & (x >= window[1]) & (x <= window[3])
    return torch.where(inside[..., None], keypoints, torch.full_like(keypoints, float("nan")))


def permute_keypoints(s: Sample, permutation: tuple[int, ...] | None) -> torch.Tensor | None:
    """Gather the keypoints (and their visibilities) by ``permutation`` along K; returns the keypoints."""
    kp = s.keypoints
    if kp is None or not permutation:
        return kp
    idx = torch.as_tensor(permutation, dtype=torch.long)
    s.fields[KEYPOINTS] = kp[:, idx]
    if KEYPOINT_VISIBILITIES in s.fields:
        s.fields[KEYPOINT_VISIBILITIES] = s.fields[KEYPOINT_VISIBILITIES][:, idx]
    return s.fields[KEYPOINTS]


def reframe(s: Sample, window: torch.Tensor) -> None:
    """Boxes and keypoints relative to window (the new image's extent in the old image's normalized frame)."""
    s.boxes = change_coordinate_frame(s.boxes, window)
    if s.keypoints is not None:
        s.fields[KEYPOINTS] = keypoints_change_frame(s.keypoints, window)


def crop_boxes(sample: Sample, window: torch.Tensor, overlap_thresh: float, clip_boxes: bool,
               prune_outside: bool = True) -> None:
    """TF _strict_random_crop_image box handling for a crop `window` (normalized, of the old image)."""
    if sample.boxes.shape[0] == 0:
        return
    keep = torch.ones(sample.boxes.shape[0], dtype=torch.bool)
    if prune_outside:
        keep &= ~outside_window(sample.boxes, window)
    keep &= ioa_in_window(sample.boxes, window) >= overlap_thresh
    sample.keep(keep)
    reframe(sample, window)
    if clip_boxes:
        sample.boxes = clip_unit(sample.boxes)
        if sample.keypoints is not None:  # TF prunes keypoints (-> NaN, invisible) only with clip_boxes
            sample.fields[KEYPOINTS] = keypoints_prune_outside(sample.keypoints, UNIT_WINDOW)


UNIT_WINDOW = torch.tensor([0.0, 0.0, 1.0, 1.0])


def prune_and_clip_unit(sample: Sample) -> None:
    """prune_completely_outside_window([0,0,1,1]) + clip_to_window(filter_nonoverlapping=False); keypoints
    outside the unit window become NaN (keypoint_ops.prune_outside_window)."""
    if sample.boxes.shape[0] == 0:
        return
    sample.keep(~outside_window(sample.boxes, UNIT_WINDOW))
    sample.boxes = clip_unit(sample.boxes)
    if sample.keypoints is not None:
        sample.fields[KEYPOINTS] = keypoints_prune_outside(sample.keypoints, UNIT_WINDOW)
