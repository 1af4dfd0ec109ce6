"""keep_aspect_ratio_resizer's size arithmetic is written once (odkit.inputs.resizers.resize_to_range_hw) and the
data loader and the exported graph both use it: the numbers equal TF's float32 ``resize_to_range`` maths."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from odkit.export.resize import TraceableKeepAspectRatio
from odkit.inputs.resizers import KeepAspectRatioResizer, resize_to_range_size


def tf_resize_to_range(height: int, width: int, min_dimension: int, max_dimension: int) -> tuple[int, int]:
    """TF preprocessor._compute_new_static_size: float32 division and multiply, round half to even."""
    h, w = np.float32(height), np.float32(width)
    large = np.float32(min_dimension) / np.minimum(h, w)
    large_size = (int(np.round(h * large)), int(np.round(w * large)))
    if not max_dimension:
        return large_size
    small = np.float32(max_dimension) / np.maximum(h, w)
    small_size = (int(np.round(h * small)), int(np.round(w * small)))
    return small_size if max(large_size) > max_dimension else large_size


def test_resize_to_range_equals_tf_float32_maths() -> None:
    rng = random.Random(0)
    cases = [(120, 133, 300, 0), (2256, 2610, 188, 1788), (1904, 56, 909, 1853), (480, 640, 600, 1024)]
    cases += [(rng.randint(1, 5000), rng.randint(1, 5000), *sorted((rng.randint(1, 2000), rng.randint(1, 2000))))
              for _ in range(2000)]
    cases += [(rng.randint(1, 5000), rng.randint(1, 5000), rng.randint(1, 2000), 0) for _ in range(300)]
    bad = [(c, resize_to_range_size(*c), tf_resize_to_range(*c)) for c in cases
           if resize_to_range_size(*c) != tf_resize_to_range(*c)]
    assert not bad, bad[:5]
    # ties and reciprocal rounding: 300 / 120 is 2.5 in float32 division (133 * 2.5 = 332.5 -> 332), not 2.5000002
    assert resize_to_range_size(120, 133, 300, 0) == (300, 332)
    assert resize_to_range_size(2256, 2610, 188, 1788) == (188, 218)


@pytest.mark.parametrize("hw", [(2256, 2610), (1904, 56), (97, 131)])
def test_exported_resizer_gives_the_loaders_size(hw: tuple[int, int]) -> None:
    min_dim, max_dim = {(2256, 2610): (188, 1788), (1904, 56): (909, 1853), (97, 131): (64, 96)}[hw]
    loader = KeepAspectRatioResizer(min_dim, max_dim, pad_to_max_dimension=True)
    exported = TraceableKeepAspectRatio(loader)
    images = torch.zeros(1, 3, *hw)
    _, shapes = exported(images)
    assert tuple(shapes[0, :2].tolist()) == loader.target_size(*hw) == tf_resize_to_range(*hw, min_dim, max_dim)
