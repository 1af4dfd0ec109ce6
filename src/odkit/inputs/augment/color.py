"""Photometric ops on [3,H,W] images in [0, 255] (TF OD API core/preprocessor.py semantics).

TF runs each op on image / 255, clips to [0, 1] and scales back; so do these.
"""

from __future__ import annotations

import io
import random

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TVF

from odkit.inputs.augment.sample import Sample
from odkit.inputs.resizers import GRAY_WEIGHTS


def _unit(s: Sample) -> torch.Tensor:
    return s.float_image() / 255.0


def _set_unit(s: Sample, x: torch.Tensor) -> Sample:
    s.image = x.clamp_(0.0, 1.0) * 255.0
    return s


def rgb_to_hsv(x: torch.Tensor) -> torch.Tensor:
    r, g, b = x[0], x[1], x[2]
    maxc, _ = x.max(dim=0)
    minc, _ = x.min(dim=0)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc])


def hsv_to_rgb(x: torch.Tensor) -> torch.Tensor:
    h, s, v = x[0], x[1], x[2]
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.to(torch.int64) % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    r = torch.stack([v, q, p, p, t, v])
    g = torch.stack([t, v, v, q, p, p])
    b = torch.stack([p, p, t, v, v, q])
    idx = i[None]
    return torch.stack([r.gather(0, idx)[0], g.gather(0, idx)[0], b.gather(0, idx)[0]])


def adjust_brightness(s: Sample, delta: float) -> Sample:
    return _set_unit(s, _unit(s) + delta)


def adjust_contrast(s: Sample, factor: float) -> Sample:
    x = _unit(s)
    mean = x.mean(dim=(-2, -1), keepdim=True)
    return _set_unit(s, (x - mean) * factor + mean)


def adjust_saturation(s: Sample, factor: float) -> Sample:
    hsv = rgb_to_hsv(_unit(s))
    hsv[1] = (hsv[1] * factor).clamp_(0.0, 1.0)
    return _set_unit(s, hsv_to_rgb(hsv))


def adjust_hue(s: Sample, delta: float) -> Sample:
    return _set_unit(s, TVF.adjust_hue(_unit(s), delta))


def random_adjust_brightness(s: Sample, rng: random.Random, max_delta: float = 0.2) -> Sample:
    return adjust_brightness(s, rng.uniform(-max_delta, max_delta))


def random_adjust_contrast(s: Sample, rng: random.Random, min_delta: float = 0.8,
                           max_delta: float = 1.25) -> Sample:
    return adjust_contrast(s, rng.uniform(min_delta, max_delta))


def random_adjust_hue(s: Sample, rng: random.Random, max_delta: float = 0.02) -> Sample:
    return adjust_hue(s, rng.uniform(-max_delta, max_delta))


def random_adjust_saturation(s: Sample, rng: random.Random, min_delta: float = 0.8,
                             max_delta: float = 1.25) -> Sample:
    return adjust_saturation(s, rng.uniform(min_delta, max_delta))


def random_distort_color(s: Sample, rng: random.Random, color_ordering: int = 0) -> Sample:
    random_adjust_brightness(s, rng, 32.0 / 255.0)
    if color_ordering == 0:
        random_adjust_saturation(s, rng, 0.5, 1.5)
        random_adjust_hue(s, rng, 0.2)
        random_adjust_contrast(s, rng, 0.5, 1.5)
    else:
        random_adjust_contrast(s, rng, 0.5, 1.5)
        random_adjust_saturation(s, rng, 0.5, 1.5)
        random_adjust_hue(s, rng, 0.2)
    return s


def rgb_to_gray(s: Sample, rng: random.Random | None = None) -> Sample:
    """Grayscale, kept as 3 equal channels (models take 3-channel input)."""
    w = torch.tensor(GRAY_WEIGHTS).view(3, 1, 1)
    gray = (s.float_image() * w).sum(0, keepdim=True)
    s.image = gray.expand(3, -1, -1).contiguous()
    return s


def random_rgb_to_gray(s: Sample, rng: random.Random, probability: float = 0.1) -> Sample:
    if rng.random() < probability:
        rgb_to_gray(s)
    return s


def _generator(rng: random.Random) -> torch.Generator:
    return torch.Generator().manual_seed(rng.getrandbits(62))


def random_pixel_value_scale(s: Sample, rng: random.Random, minval: float = 0.9, maxval: float = 1.1) -> Sample:
    """Multiply each pixel value by its own U(minval, maxval), clip to [0, 255]."""
    x = s.float_image()
    coef = torch.rand(x.shape, generator=_generator(rng)) * (maxval - minval) + minval
    s.image = (x * coef).clamp_(0.0, 255.0)
    return s


def random_jpeg_quality(s: Sample, rng: random.Random, random_coef: float = 0.0, min_jpeg_quality: int = 0,
                        max_jpeg_quality: int = 100) -> Sample:
    """Re-encode as JPEG at a random quality (Pillow)."""
    if random_coef and rng.random() < random_coef:
        return s
    from PIL import Image

    quality = max(1, rng.randint(min_jpeg_quality, max_jpeg_quality))
    arr = s.image.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    buf.seek(0)
    out = np.asarray(Image.open(buf).convert("RGB"))
    s.image = torch.from_numpy(out.copy()).permute(2, 0, 1).contiguous()
    return s


def random_patch_gaussian(s: Sample, rng: random.Random, random_coef: float = 0.0, min_patch_size: int = 1,
                          max_patch_size: int = 250, min_gaussian_stddev: float = 0.0,
                          max_gaussian_stddev: float = 1.0) -> Sample:
    """Add Gaussian noise (in [0, 1] units) inside a random square patch."""
    if random_coef and rng.random() < random_coef:
        return s
    h, w = s.height, s.width
    size = rng.randrange(min_patch_size, max_patch_size) if max_patch_size > min_patch_size else min_patch_size
    std = rng.uniform(min_gaussian_stddev, max_gaussian_stddev)
    cy, cx = rng.randrange(h), rng.randrange(w)
    y0, x0 = max(0, cy - size // 2), max(0, cx - size // 2)
    y1, x1 = min(h, cy - size // 2 + size), min(w, cx - size // 2 + size)
    x = _unit(s).clone()
    if y1 > y0 and x1 > x0:
        noise = torch.randn((3, y1 - y0, x1 - x0), generator=_generator(rng)) * std
        x[:, y0:y1, x0:x1] = (x[:, y0:y1, x0:x1] + noise).clamp(0.0, 1.0)
    return _set_unit(s, x)


def normalize_image(s: Sample, rng: random.Random | None = None, original_minval: float = 0.0,
                    original_maxval: float = 255.0, target_minval: float = 0.0,
                    target_maxval: float = 1.0) -> Sample:
    """Map pixel values linearly from the original to the target range (float output)."""
    x = s.float_image()
    scale = (target_maxval - target_minval) / (original_maxval - original_minval)
    s.image = (x - original_minval) * scale + target_minval
    return s


def subtract_channel_mean(s: Sample, rng: random.Random | None = None,
                          means: tuple[float, ...] = (0.0, 0.0, 0.0)) -> Sample:
    s.image = s.float_image() - torch.tensor(means, dtype=torch.float32).view(-1, 1, 1)
    return s


def adjust_gamma(s: Sample, rng: random.Random | None = None, gamma: float = 1.0, gain: float = 1.0) -> Sample:
    """tf.image.adjust_gamma on the [0, 1] image: gain * x ** gamma."""
    return _set_unit(s, gain * _unit(s).pow(gamma))
