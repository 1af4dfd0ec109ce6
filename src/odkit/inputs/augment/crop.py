"""Random crops (TF OD API core/preprocessor.py + tf.image.sample_distorted_bounding_box semantics)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from odkit.inputs.augment.geometric import pad_to, random_pad_image
from odkit.inputs.augment.sample import Sample, crop_boxes


def _generate_crop(rng: random.Random, width: int, height: int, min_rel: float, max_rel: float,
                   aspect: float) -> tuple[int, int, int, int] | None:
    """One try of TF's GenerateRandomCrop: (y, x, h, w) in pixels or None."""
    if max_rel <= 0 or aspect <= 0 or width <= 0 or height <= 0 or min_rel > max_rel:
        return None
    min_area = min_rel * width * height
    max_area = max_rel * width * height
    h = int(round((min_area / aspect) ** 0.5))
    max_h = int(round((max_area / aspect) ** 0.5))
    if round(max_h * aspect) > width:
        max_h = int((width + 0.5 - 1e-7) / aspect)
        if round(max_h * aspect) > width:
            max_h -= 1
    max_h = min(max_h, height)
    h = min(h, max_h)
    if h < max_h:
        h += rng.randint(0, max_h - h)
    w = int(round(h * aspect))
    area = w * h
    if area < min_area:
        h += 1
        w = int(round(h * aspect))
        area = w * h
    if area > max_area:
        h -= 1
        w = int(round(h * aspect))
        area = w * h
    if area < min_area or area > max_area or w > width or h > height or w <= 0 or h <= 0:
        return None
    y = rng.randrange(height - h) if h < height else 0
    x = rng.randrange(width - w) if w < width else 0
    return y, x, h, w


def _covers(crop: tuple[int, int, int, int], boxes_px: torch.Tensor, min_object_covered: float) -> bool:
    y, x, h, w = crop
    if h * w < 1.0:
        return False
    ymin = boxes_px[:, 0].clamp(min=y)
    xmin = boxes_px[:, 1].clamp(min=x)
    ymax = boxes_px[:, 2].clamp(max=y + h)
    xmax = boxes_px[:, 3].clamp(max=x + w)
    inter = (ymax - ymin).clamp(min=0) * (xmax - xmin).clamp(min=0)
    area = (boxes_px[:, 2] - boxes_px[:, 0]) * (boxes_px[:, 3] - boxes_px[:, 1])
    ok = (area >= 1.0) & (inter >= min_object_covered * area)
    return bool(ok.any())


def sample_distorted_bounding_box(rng: random.Random, height: int, width: int, boxes: torch.Tensor,
                                  min_object_covered: float, aspect_ratio_range: Sequence[float],
                                  area_range: Sequence[float], max_attempts: int = 100) -> tuple[int, int, int, int]:
    """(y, x, h, w) of a crop covering >= min_object_covered of one box; the whole image if none found."""
    if boxes.shape[0] == 0:
        boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0]])  # use_image_if_no_bounding_boxes
    scale = torch.tensor([height, width, height, width], dtype=torch.float32)
    boxes_px = boxes.clamp(0.0, 1.0) * scale
    lo, hi = aspect_ratio_range
    for _ in range(max_attempts):
        aspect = rng.random() * (hi - lo) + lo
        crop = _generate_crop(rng, width, height, area_range[0], area_range[1], aspect)
        if crop is not None and _covers(crop, boxes_px, min_object_covered):
            return crop
    return 0, 0, height, width


def _apply_crop(s: Sample, crop: tuple[int, int, int, int], overlap_thresh: float, clip_boxes: bool,
                prune_outside: bool = True) -> None:
    y, x, h, w = crop
    H, W = s.height, s.width
    s.image = s.image[:, y:y + h, x:x + w]
    s.map_masks(lambda m: m[:, y:y + h, x:x + w])
    window = torch.tensor([y / H, x / W, (y + h) / H, (x + w) / W])
    crop_boxes(s, window, overlap_thresh, clip_boxes, prune_outside)


def random_crop_image(s: Sample, rng: random.Random, min_object_covered: float = 1.0,
                      aspect_ratio_range: Sequence[float] = (0.75, 1.33),
                      area_range: Sequence[float] = (0.1, 1.0), overlap_thresh: float = 0.3,
                      clip_boxes: bool = True, random_coef: float = 0.0) -> Sample:
    if random_coef > 0 and rng.random() <= random_coef:
        return s
    crop = sample_distorted_bounding_box(rng, s.height, s.width, s.boxes, min_object_covered,
                                         aspect_ratio_range, area_range)
    _apply_crop(s, crop, overlap_thresh, clip_boxes)
    return s


def random_crop_pad_image(s: Sample, rng: random.Random, min_object_covered: float = 1.0,
                          aspect_ratio_range: Sequence[float] = (0.75, 1.33),
                          area_range: Sequence[float] = (0.1, 1.0), overlap_thresh: float = 0.3,
                          clip_boxes: bool = True, random_coef: float = 0.0,
                          min_padded_size_ratio: Sequence[float] = (1.0, 1.0),
                          max_padded_size_ratio: Sequence[float] = (2.0, 2.0),
                          pad_color: Sequence[float] | None = None) -> Sample:
    """Random crop, then random pad; padded size ratios are relative to the original image."""
    h, w = s.height, s.width
    random_crop_image(s, rng, min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
                      clip_boxes, random_coef)
    min_size = (int(h * min_padded_size_ratio[0]), int(w * min_padded_size_ratio[1]))
    max_size = (int(h * max_padded_size_ratio[0]), int(w * max_padded_size_ratio[1]))
    return random_pad_image(s, rng, min_size, max_size, list(pad_color) if pad_color else None)


def random_crop_to_aspect_ratio(s: Sample, rng: random.Random, aspect_ratio: float = 1.0,
                                overlap_thresh: float = 0.3, clip_boxes: bool = True) -> Sample:
    """Largest crop with width / height == aspect_ratio at a random position."""
    H, W = s.height, s.width
    orig = W / H
    th = H if orig >= aspect_ratio else int(round(W / aspect_ratio))
    tw = W if orig <= aspect_ratio else int(round(H * aspect_ratio))
    th, tw = max(1, min(th, H)), max(1, min(tw, W))
    y = rng.randint(0, H - th)
    x = rng.randint(0, W - tw)
    _apply_crop(s, (y, x, th, tw), overlap_thresh, clip_boxes, prune_outside=False)
    return s


def random_pad_to_aspect_ratio(s: Sample, rng: random.Random, aspect_ratio: float = 1.0,
                               min_padded_size_ratio: Sequence[float] = (1.0, 1.0),
                               max_padded_size_ratio: Sequence[float] = (2.0, 2.0)) -> Sample:
    """Zero-pad bottom/right to the aspect ratio, at a random scale within the ratio bounds."""
    h, w = float(s.height), float(s.width)
    ar = w / h
    th = h if ar <= aspect_ratio else w / aspect_ratio
    tw = w if ar >= aspect_ratio else h * aspect_ratio
    min_h = max(min_padded_size_ratio[0] * h, th)
    min_w = max(min_padded_size_ratio[1] * w, tw)
    max_h = max(max_padded_size_ratio[0] * h, th)
    max_w = max(max_padded_size_ratio[1] * w, tw)
    max_scale = min(max_h / th, max_w / tw)
    min_scale = min(max_scale, max(min_h / th, min_w / tw))
    scale = rng.uniform(min_scale, max_scale)
    nh, nw = max(int(round(scale * th)), s.height), max(int(round(scale * tw)), s.width)
    pad_to(s, nh, nw, 0, 0, [0.0, 0.0, 0.0])
    return s


SSD_COVERED = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def ssd_random_crop(s: Sample, rng: random.Random, min_object_covered: Sequence[float] = SSD_COVERED,
                    aspect_ratio_range: Sequence[Sequence[float]] = ((0.5, 2.0),) * 7,
                    area_range: Sequence[Sequence[float]] = ((0.1, 1.0),) * 7,
                    overlap_thresh: Sequence[float] = SSD_COVERED,
                    clip_boxes: Sequence[bool] = (True,) * 7,
                    random_coef: Sequence[float] = (0.15,) * 7) -> Sample:
    """Pick one operation uniformly and run random_crop_image with its parameters."""
    i = rng.randrange(len(min_object_covered))
    return random_crop_image(s, rng, min_object_covered[i], aspect_ratio_range[i], area_range[i],
                             overlap_thresh[i], clip_boxes[i], random_coef[i])


SSD_PAD_COVERED = (0.1, 0.3, 0.5, 0.7, 0.9, 1.0)


def ssd_random_crop_pad(s: Sample, rng: random.Random, min_object_covered: Sequence[float] = SSD_PAD_COVERED,
                        aspect_ratio_range: Sequence[Sequence[float]] = ((0.5, 2.0),) * 6,
                        area_range: Sequence[Sequence[float]] = ((0.1, 1.0),) * 6,
                        overlap_thresh: Sequence[float] = SSD_PAD_COVERED,
                        clip_boxes: Sequence[bool] = (True,) * 6,
                        random_coef: Sequence[float] = (0.15,) * 6,
                        min_padded_size_ratio: Sequence[Sequence[float]] = ((1.0, 1.0),) * 6,
                        max_padded_size_ratio: Sequence[Sequence[float]] = ((2.0, 2.0),) * 6,
                        pad_color: Sequence[Sequence[float] | None] = (None,) * 6) -> Sample:
    i = rng.randrange(len(min_object_covered))
    return random_crop_pad_image(s, rng, min_object_covered[i], aspect_ratio_range[i], area_range[i],
                                 overlap_thresh[i], clip_boxes[i], random_coef[i], min_padded_size_ratio[i],
                                 max_padded_size_ratio[i], pad_color[i])


def ssd_random_crop_fixed_aspect_ratio(s: Sample, rng: random.Random,
                                       min_object_covered: Sequence[float] = SSD_COVERED,
                                       aspect_ratio: float = 1.0,
                                       area_range: Sequence[Sequence[float]] = ((0.1, 1.0),) * 7,
                                       overlap_thresh: Sequence[float] = SSD_COVERED,
                                       clip_boxes: Sequence[bool] = (True,) * 7,
                                       random_coef: Sequence[float] = (0.15,) * 7) -> Sample:
    n = len(min_object_covered)
    ssd_random_crop(s, rng, min_object_covered, ((aspect_ratio, aspect_ratio),) * n, area_range,
                    overlap_thresh, clip_boxes, random_coef)
    return random_crop_to_aspect_ratio(s, rng, aspect_ratio, clip_boxes=clip_boxes[0])


def ssd_random_crop_pad_fixed_aspect_ratio(s: Sample, rng: random.Random,
                                           min_object_covered: Sequence[float] = SSD_COVERED,
                                           aspect_ratio: float = 1.0,
                                           aspect_ratio_range: Sequence[Sequence[float]] = ((0.5, 2.0),) * 7,
                                           area_range: Sequence[Sequence[float]] = ((0.1, 1.0),) * 7,
                                           overlap_thresh: Sequence[float] = SSD_COVERED,
                                           clip_boxes: Sequence[bool] = (True,) * 7,
                                           random_coef: Sequence[float] = (0.15,) * 7,
                                           min_padded_size_ratio: Sequence[float] = (1.0, 1.0),
                                           max_padded_size_ratio: Sequence[float] = (2.0, 2.0)) -> Sample:
    ssd_random_crop(s, rng, min_object_covered, aspect_ratio_range, area_range, overlap_thresh,
                    clip_boxes, random_coef)
    return random_pad_to_aspect_ratio(s, rng, aspect_ratio, min_padded_size_ratio, max_padded_size_ratio)


__all__ = [
    "sample_distorted_bounding_box", "random_crop_image", "random_crop_pad_image",
    "random_crop_to_aspect_ratio", "random_pad_to_aspect_ratio", "ssd_random_crop", "ssd_random_crop_pad",
    "ssd_random_crop_fixed_aspect_ratio", "ssd_random_crop_pad_fixed_aspect_ratio"
]
