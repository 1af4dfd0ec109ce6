"""Flips, rotation, scaling, padding and patch ops (TF OD API core/preprocessor.py semantics).

Keypoints move with the image as in TF (keypoint_ops): flips and rotation with their permutations, pads and
crops by a change of frame, crops prune keypoints leaving the image to NaN; scaling / resizing leaves the
normalized coordinates unchanged. Where TF moves keypoints but not their visibilities (vertical flip,
rotation), odkit permutes the visibilities too, so a labelled keypoint keeps its label.
Instance masks (Sample field "masks") get the image's flips, rotation, crops and pads (zeros), and its
resizes with nearest sampling, as TF's preprocessor does (masks resized with NEAREST_NEIGHBOR).
"""

from __future__ import annotations

import math
import random

import torch

from odkit.inputs.augment.sample import KEYPOINTS, Sample, permute_keypoints, prune_and_clip_unit, reframe
from odkit.inputs.resizers import resize_images


def random_horizontal_flip(s: Sample, rng: random.Random, probability: float = 0.5,
                           keypoint_flip_permutation: tuple[int, ...] = ()) -> Sample:
    """Flip left-right; keypoint k of the result is keypoint permutation[k] mirrored (keypoint_ops)."""
    if rng.random() < probability:
        s.image = s.image.flip(-1)
        s.map_masks(lambda m: m.flip(-1))
        b = s.boxes
        s.boxes = torch.stack([b[:, 0], 1.0 - b[:, 3], b[:, 2], 1.0 - b[:, 1]], dim=1)
        kp = permute_keypoints(s, keypoint_flip_permutation)
        if kp is not None:
            s.fields[KEYPOINTS] = torch.stack([kp[..., 0], 1.0 - kp[..., 1]], dim=-1)
    return s


def random_vertical_flip(s: Sample, rng: random.Random, probability: float = 0.5,
                         keypoint_flip_permutation: tuple[int, ...] = ()) -> Sample:
    if rng.random() < probability:
        s.image = s.image.flip(-2)
        s.map_masks(lambda m: m.flip(-2))
        b = s.boxes
        s.boxes = torch.stack([1.0 - b[:, 2], b[:, 1], 1.0 - b[:, 0], b[:, 3]], dim=1)
        kp = permute_keypoints(s, keypoint_flip_permutation)
        if kp is not None:
            s.fields[KEYPOINTS] = torch.stack([1.0 - kp[..., 0], kp[..., 1]], dim=-1)
    return s


def random_rotation90(s: Sample, rng: random.Random, probability: float = 0.5,
                      keypoint_rot_permutation: tuple[int, ...] = ()) -> Sample:
    """Rotate 90 degrees counter-clockwise: (y, x) -> (1 - x, y) (keypoint_ops.rot90)."""
    if rng.random() < probability:
        s.image = torch.rot90(s.image, 1, dims=(-2, -1))
        s.map_masks(lambda m: torch.rot90(m, 1, dims=(-2, -1)))
        b = s.boxes
        s.boxes = torch.stack([1.0 - b[:, 3], b[:, 0], 1.0 - b[:, 1], b[:, 2]], dim=1)
        kp = permute_keypoints(s, keypoint_rot_permutation)
        if kp is not None:
            s.fields[KEYPOINTS] = torch.stack([1.0 - kp[..., 1], kp[..., 0]], dim=-1)
    return s


def _resize(s: Sample, h: int, w: int, method: str = "bilinear") -> None:
    h, w = max(1, int(h)), max(1, int(w))
    if (h, w) != (s.height, s.width):
        s.image = resize_images(s.float_image()[None], (h, w), method)[0]
        s.map_masks(lambda m: resize_masks(m, h, w))


def resize_masks(masks: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """uint8 [N, H, W] -> [N, h, w] with nearest sampling (TF resizes masks with NEAREST_NEIGHBOR)."""
    if masks.shape[0] == 0:
        return masks.new_zeros((0, h, w))
    return resize_images(masks[None].to(torch.float32), (h, w), "nearest")[0].to(masks.dtype)


def random_image_scale(s: Sample, rng: random.Random, min_scale_ratio: float = 0.5,
                       max_scale_ratio: float = 2.0) -> Sample:
    """Scale the image keeping aspect ratio; normalized boxes are unchanged."""
    r = rng.uniform(min_scale_ratio, max_scale_ratio)
    _resize(s, int(s.height * r), int(s.width * r))
    return s


def resize_image(s: Sample, rng: random.Random, new_height: int, new_width: int,
                 method: str = "bilinear") -> Sample:
    _resize(s, new_height, new_width, method)
    return s


def random_resize_method(s: Sample, rng: random.Random, target_height: int, target_width: int) -> Sample:
    method = rng.choice(["bilinear", "nearest", "bicubic", "area"])
    _resize(s, target_height, target_width, method)
    return s


def random_downscale_to_target_pixels(s: Sample, rng: random.Random, random_coef: float = 0.0,
                                      min_target_pixels: int = 300000,
                                      max_target_pixels: int = 500000) -> Sample:
    """Draw target pixels in [min, max); if the image is larger, downscale it to about that many pixels."""
    if random_coef and rng.random() < random_coef:
        return s
    target = rng.randrange(min_target_pixels, max_target_pixels) if max_target_pixels > min_target_pixels \
        else min_target_pixels
    pixels = s.height * s.width
    if pixels <= target:
        return s
    scale = (target / pixels) ** 0.5
    _resize(s, int(s.height * scale), int(s.width * scale))
    return s


def mean_color(image: torch.Tensor) -> list[float]:
    return image.to(torch.float32).mean(dim=(-2, -1)).tolist()


def pad_to(s: Sample, height: int, width: int, off_y: int, off_x: int, color: list[float]) -> None:
    """Place the image at (off_y, off_x) in a height x width canvas of `color`; realign boxes."""
    h, w = s.height, s.width
    canvas = torch.tensor(color, dtype=torch.float32).view(3, 1, 1).expand(3, height, width)
    canvas = canvas.to(s.image.dtype) if s.image.dtype != torch.uint8 else canvas.round().clamp(0, 255).to(torch.uint8)
    canvas = canvas.clone()
    canvas[:, off_y:off_y + h, off_x:off_x + w] = s.image
    s.image = canvas

    def pad(m: torch.Tensor) -> torch.Tensor:
        out = m.new_zeros((m.shape[0], height, width))
        out[:, off_y:off_y + h, off_x:off_x + w] = m
        return out

    s.map_masks(pad)
    window = torch.tensor([-off_y / h, -off_x / w, (height - off_y) / h, (width - off_x) / w])
    reframe(s, window)


def random_pad_image(s: Sample, rng: random.Random, min_image_size: tuple[int, int] | None = None,
                     max_image_size: tuple[int, int] | None = None,
                     pad_color: list[float] | None = None) -> Sample:
    h, w = s.height, s.width
    min_h, min_w = min_image_size if min_image_size else (h, w)
    max_h, max_w = max_image_size if max_image_size else (2 * h, 2 * w)
    min_h, min_w = max(min_h, h), max(min_w, w)
    max_h, max_w = max(max_h, min_h), max(max_w, min_w)
    th = rng.randrange(min_h, max_h) if max_h > min_h else max_h  # TF draws in [min, max)
    tw = rng.randrange(min_w, max_w) if max_w > min_w else max_w
    oy = rng.randrange(0, th - h) if th > h else 0
    ox = rng.randrange(0, tw - w) if tw > w else 0
    color = list(pad_color) if pad_color else mean_color(s.image)
    pad_to(s, th, tw, oy, ox, color)
    return s


def random_absolute_pad_image(s: Sample, rng: random.Random, max_height_padding: int,
                              max_width_padding: int, pad_color: list[float] | None = None) -> Sample:
    h, w = s.height, s.width
    return random_pad_image(s, rng, (h, w), (h + max(0, max_height_padding), w + max(0, max_width_padding)),
                            pad_color)


def random_black_patches(s: Sample, rng: random.Random, max_black_patches: int = 10,
                         probability: float = 0.5, size_to_image_ratio: float = 0.1) -> Sample:
    h, w = s.height, s.width
    size = int(min(h, w) * size_to_image_ratio)
    if size <= 0:
        return s
    image = None
    for _ in range(max_black_patches):
        if rng.random() >= probability:
            continue
        y = int(rng.uniform(0, 1.0 - size_to_image_ratio) * h)
        x = int(rng.uniform(0, 1.0 - size_to_image_ratio) * w)
        if image is None:
            image = s.image.clone()
        image[:, y:y + size, x:x + size] = 0
    if image is not None:
        s.image = image
    return s


def random_self_concat_image(s: Sample, rng: random.Random, concat_vertical_probability: float = 0.1,
                             concat_horizontal_probability: float = 0.1) -> Sample:
    """Concatenate the image with itself; boxes are duplicated into each half."""
    for dim, prob in ((1, concat_vertical_probability), (2, concat_horizontal_probability)):
        if rng.random() >= prob:
            continue
        s.image = torch.cat([s.image, s.image], dim=dim)
        masks = s.fields.get("masks")
        b = s.boxes
        if dim == 1:
            first = torch.stack([b[:, 0] / 2, b[:, 1], b[:, 2] / 2, b[:, 3]], 1)
            second = torch.stack([b[:, 0] / 2 + 0.5, b[:, 1], b[:, 2] / 2 + 0.5, b[:, 3]], 1)
        else:
            first = torch.stack([b[:, 0], b[:, 1] / 2, b[:, 2], b[:, 3] / 2], 1)
            second = torch.stack([b[:, 0], b[:, 1] / 2 + 0.5, b[:, 2], b[:, 3] / 2 + 0.5], 1)
        s.boxes = torch.cat([first, second])
        kp = s.keypoints
        s.fields = {k: torch.cat([v, v]) for k, v in s.fields.items()}
        if kp is not None:  # TF leaves keypoints out of this op (they would no longer match the boxes)
            axis = 0 if dim == 1 else 1
            halves = [kp.clone(), kp.clone()]
            halves[0][..., axis] = kp[..., axis] / 2
            halves[1][..., axis] = kp[..., axis] / 2 + 0.5
            s.fields[KEYPOINTS] = torch.cat(halves)
        if masks is not None:  # copy 1 in the first half, copy 2 in the second
            zeros = torch.zeros_like(masks)
            s.fields["masks"] = torch.cat([torch.cat([masks, zeros], dim=dim), torch.cat([zeros, masks], dim=dim)])
    return s


def random_scale_crop_and_pad_to_square(s: Sample, rng: random.Random, output_size: int = 512,
                                        scale_min: float = 0.1, scale_max: float = 2.0) -> Sample:
    """Scale so the longer side is output_size * U(scale_min, scale_max), crop/pad to a square."""
    h, w = s.height, s.width
    scale = rng.uniform(scale_min, scale_max)
    m = float(max(h, w))
    sh, sw = max(1, int(scale * output_size * h / m)), max(1, int(scale * output_size * w / m))
    _resize(s, sh, sw)
    oy = int(max(0, sh - output_size) * rng.random())
    ox = int(max(0, sw - output_size) * rng.random())
    def crop_pad(x: torch.Tensor) -> torch.Tensor:
        img = x[:, oy:oy + output_size, ox:ox + output_size]
        out = torch.zeros((x.shape[0], output_size, output_size), dtype=img.dtype)
        out[:, :img.shape[1], :img.shape[2]] = img
        return out

    s.image = crop_pad(s.image)
    s.map_masks(crop_pad)
    window = torch.tensor([oy / sh, ox / sw, (oy + output_size) / sh, (ox + output_size) / sw])
    reframe(s, window)
    prune_and_clip_unit(s)
    return s


def _crop_border(border: int, size: int) -> int:
    """TF _get_crop_border: border // 2**k with the smallest k such that border / 2**k < size / 2."""
    if border <= 0:
        return 0
    i = math.ceil(math.log(2.0 * border / size) / math.log(2.0))
    divisor = int(min(max(2.0 ** i, 1.0), float(border)))
    return border // divisor


def random_square_crop_by_scale(s: Sample, rng: random.Random, scale_min: float = 0.6,
                                scale_max: float = 1.3, max_border: int = 128, num_scales: int = 8) -> Sample:
    """Square crop of side scale * max(h, w) around a random centre, zero padded where it leaves the image."""
    h, w = s.height, s.width
    if num_scales > 1:
        scales = [scale_min + (scale_max - scale_min) * i / (num_scales - 1) for i in range(num_scales)]
    else:
        scales = [scale_min]
    size = max(2, int(rng.choice(scales) * max(h, w)))
    hb, wb = _crop_border(max_border, h), _crop_border(max_border, w)
    yc = rng.randint(hb, max(hb, h - hb))
    xc = rng.randint(wb, max(wb, w - wb))
    half = size // 2
    cy0, cx0 = yc - half, xc - half
    y0, x0 = max(cy0, 0), max(cx0, 0)
    y1, x1 = min(yc + half, h), min(xc + half, w)
    def square(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((x.shape[0], size, size), dtype=x.dtype)
        out[:, y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0] = x[:, y0:y1, x0:x1]
        return out

    s.image = square(s.image)
    s.map_masks(square)
    window = torch.tensor([cy0 / h, cx0 / w, (cy0 + size) / h, (cx0 + size) / w])
    reframe(s, window)
    prune_and_clip_unit(s)
    return s
