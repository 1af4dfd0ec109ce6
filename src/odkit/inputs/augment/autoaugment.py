"""AutoAugment for detection, policy v0 (Zoph et al. 2019; TF OD API utils/autoaugment_utils.py).

Works on uint8 images (TF casts to uint8 first). Geometric ops warp the image with nearest sampling and
fill 128, and move each box by mapping its corners with the same transform (enclosing box, clipped).
Differences from TF: boxes pushed completely out of the image are dropped (TF keeps a 0.05-wide sliver
at the border).
"""

from __future__ import annotations

import math
import random

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TVF

from odkit.inputs.augment.sample import Sample, to_uint8

FILL = 128
MAX_LEVEL = 10.0
CUTOUT_CONST = 100
TRANSLATE_CONST = 250
TRANSLATE_BBOX_CONST = 120

# (name, probability, level) pairs; one sub-policy is chosen uniformly per image.
POLICY_V0 = [
    [("TranslateX_BBox", 0.6, 4), ("Equalize", 0.8, 10)],
    [("TranslateY_Only_BBoxes", 0.2, 2), ("Cutout", 0.8, 8)],
    [("Sharpness", 0.0, 8), ("ShearX_BBox", 0.4, 0)],
    [("ShearY_BBox", 1.0, 2), ("TranslateY_Only_BBoxes", 0.6, 6)],
    [("Rotate_BBox", 0.6, 10), ("Color", 1.0, 6)],
]


def _negate(rng: random.Random, v: float) -> float:
    return -v if rng.random() < 0.5 else v


def warp(image: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
    """Output pixel (x, y) takes input pixel inverse @ (x, y, 1) (nearest); outside -> FILL."""
    _, h, w = image.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    pts = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1) @ inverse.T  # [h, w, 2] input (x, y)
    gx = pts[..., 0] * 2 / max(w - 1, 1) - 1
    gy = pts[..., 1] * 2 / max(h - 1, 1) - 1
    grid = torch.stack([gx, gy], dim=-1)[None]
    src = torch.cat([image.to(torch.float32), torch.ones((1, h, w))], dim=0)[None]
    out = F.grid_sample(src, grid, mode="nearest", padding_mode="zeros", align_corners=True)[0]
    img = torch.where(out[3:] > 0.5, out[:3], torch.full_like(out[:3], FILL))
    return img.round().clamp(0, 255).to(torch.uint8)


def _map_boxes(s: Sample, forward: torch.Tensor) -> None:
    """Move boxes by mapping their pixel corners with forward (2x3, x/y); enclosing box, clip, drop empty."""
    if s.boxes.shape[0] == 0:
        return
    h, w = s.height, s.width
    b = s.boxes * torch.tensor([h, w, h, w])
    corners = torch.stack([torch.stack([b[:, 1], b[:, 0]], 1), torch.stack([b[:, 3], b[:, 0]], 1),
                           torch.stack([b[:, 1], b[:, 2]], 1), torch.stack([b[:, 3], b[:, 2]], 1)], 1)
    pts = corners @ forward[:, :2].T + forward[:, 2]  # [N, 4, 2] (x, y)
    x0, x1 = pts[..., 0].min(1).values.clamp(0, w), pts[..., 0].max(1).values.clamp(0, w)
    y0, y1 = pts[..., 1].min(1).values.clamp(0, h), pts[..., 1].max(1).values.clamp(0, h)
    s.boxes = torch.stack([y0 / h, x0 / w, y1 / h, x1 / w], 1)
    s.keep((y1 > y0) & (x1 > x0))


def _affine(s: Sample, forward: torch.Tensor) -> Sample:
    full = torch.cat([forward, torch.tensor([[0.0, 0.0, 1.0]])])
    s.image = warp(to_uint8(s.image), torch.linalg.inv(full)[:2])
    _map_boxes(s, forward)
    return s


def translate(s: Sample, pixels: float, horizontal: bool) -> Sample:
    """Content moves by -pixels (TF translate_x / translate_y)."""
    f = torch.tensor([[1.0, 0.0, -pixels if horizontal else 0.0], [0.0, 1.0, 0.0 if horizontal else -pixels]])
    return _affine(s, f)


def shear(s: Sample, level: float, horizontal: bool) -> Sample:
    """TF shear_x: output (x, y) takes input (x + level * y, y); content moves x -> x - level * y."""
    f = torch.tensor([[1.0, -level, 0.0], [0.0, 1.0, 0.0]]) if horizontal else \
        torch.tensor([[1.0, 0.0, 0.0], [-level, 1.0, 0.0]])
    return _affine(s, f)


def rotate(s: Sample, degrees: float) -> Sample:
    """Counter-clockwise rotation about the image centre."""
    t = math.radians(degrees)
    cx, cy = (s.width - 1) / 2, (s.height - 1) / 2
    c, si = math.cos(t), math.sin(t)
    # (dx, dy) -> (c dx + s dy, -s dx + c dy): y points down, so this turns counter-clockwise on screen
    f = torch.tensor([[c, si, cx - c * cx - si * cy], [-si, c, cy + si * cx - c * cy]])
    return _affine(s, f)


def cutout(s: Sample, rng: random.Random, pad_size: int) -> Sample:
    img = to_uint8(s.image).clone()
    h, w = img.shape[-2:]
    cy, cx = rng.randrange(h), rng.randrange(w)
    img[:, max(0, cy - pad_size):min(h, cy + pad_size), max(0, cx - pad_size):min(w, cx + pad_size)] = FILL
    s.image = img
    return s


def _only_bboxes(s: Sample, rng: random.Random, prob: float, pixels: float, horizontal: bool) -> Sample:
    """Translate the content of each box (inside the box) with probability prob / 3."""
    img = to_uint8(s.image).clone()
    h, w = img.shape[-2:]
    for box in s.boxes.tolist():
        if rng.random() >= prob / 3.0:
            continue
        y0, x0 = int(h * box[0]), int(w * box[1])
        y1, x1 = max(int(h * box[2]), y0 + 1), max(int(w * box[3]), x0 + 1)
        region = Sample(img[:, y0:y1, x0:x1].clone(), torch.zeros((0, 4)), {})
        img[:, y0:y1, x0:x1] = translate(region, pixels, horizontal).image
    s.image = img
    return s


def _enhance_factor(level: float) -> float:
    return (level / MAX_LEVEL) * 1.8 + 0.1


def apply_op(s: Sample, rng: random.Random, name: str, prob: float, level: float) -> Sample:
    if name.endswith("_Only_BBoxes"):  # these take the probability per box
        pixels = _negate(rng, level / MAX_LEVEL * TRANSLATE_BBOX_CONST)
        return _only_bboxes(s, rng, prob, pixels, horizontal=name.startswith("TranslateX"))
    if rng.random() >= prob:
        return s
    if name in ("TranslateX_BBox", "TranslateY_BBox"):
        return translate(s, _negate(rng, level / MAX_LEVEL * TRANSLATE_CONST), name.startswith("TranslateX"))
    if name in ("ShearX_BBox", "ShearY_BBox"):
        return shear(s, _negate(rng, level / MAX_LEVEL * 0.3), name.startswith("ShearX"))
    if name == "Rotate_BBox":
        return rotate(s, _negate(rng, level / MAX_LEVEL * 30.0))
    if name == "Cutout":
        return cutout(s, rng, int(level / MAX_LEVEL * CUTOUT_CONST))
    img = to_uint8(s.image)
    if name == "Equalize":
        s.image = TVF.equalize(img)
    elif name == "Color":
        s.image = TVF.adjust_saturation(img, _enhance_factor(level))
    elif name == "Sharpness":
        s.image = TVF.adjust_sharpness(img, _enhance_factor(level))
    else:
        raise ValueError(f"unknown AutoAugment op {name}")
    return s


def autoaugment_image(s: Sample, rng: random.Random, policy_name: str = "v0") -> Sample:
    """Apply one random sub-policy of the named policy (only v0 is implemented)."""
    if policy_name != "v0":
        raise ValueError(f"AutoAugment policy {policy_name!r} is not implemented (only v0)")
    s.image = to_uint8(s.image)
    for name, prob, level in POLICY_V0[rng.randrange(len(POLICY_V0))]:
        s = apply_op(s, rng, name, prob, level)
    return s
