"""Keypoints through the augmentation ops and the input pipeline (issue 16, TF OD API preprocessor semantics).

Each keypoint is painted as a one-pixel marker with its own value; after an op every keypoint still labelled
must sit on its marker (pixel centres are preserved by flips, rotations, crops and pads), and a keypoint whose
marker left the image must be NaN (pruned, as TF's prune_outside_window)."""

from __future__ import annotations

import functools
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odkit.errors import ConfigError, UnsupportedError
from odkit.inputs.augment import build_augmenter, crop, geometric
from odkit.inputs.augment.sample import Sample, make_sample
from odkit.protos import preprocessor_pb2

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)


def marked_sample(h: int, w: int, n: int, k: int, rng: random.Random) -> Sample:
    """n boxes with k keypoints each at distinct pixel centres; marker value = 1 + global keypoint index."""
    image = torch.zeros((3, h, w), dtype=torch.float32)
    cells = rng.sample(range(h * w), n * k)
    kps = torch.zeros((n, k, 2))
    for i, c in enumerate(cells):
        y, x = divmod(c, w)
        image[0, y, x] = 1 + i
        image[1, y, x] = 255.0
        kps[i // k, i % k] = torch.tensor([(y + 0.5) / h, (x + 0.5) / w])
    vis = torch.ones((n, k), dtype=torch.bool)
    vis[0, 0] = False  # one unlabelled keypoint (NaN, as TF's decoder makes it)
    kps[0, 0] = float("nan")
    boxes = torch.cat([kps.nan_to_num(0.5).amin(1), kps.nan_to_num(0.5).amax(1)], 1)
    boxes = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]], 1).clamp(0, 1)
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + 0.05).clamp(max=1.0)
    s = make_sample(image, boxes, torch.arange(1, n + 1), keypoints=kps, keypoint_visibilities=vis)
    s.fields["marker"] = torch.arange(n * k).view(n, k) + 1  # what each keypoint slot should land on
    return s


def check_on_markers(s: Sample, permuted: torch.Tensor | None = None) -> int:
    """Every finite keypoint lies on the pixel holding its marker; returns how many were checked."""
    kp, img = s.fields["keypoints"], s.image
    markers = s.fields["marker"] if permuted is None else permuted
    checked = 0
    for obj, mk in zip(kp.tolist(), markers.tolist()):
        for (y, x), m in zip(obj, mk):
            if y != y:  # NaN: unlabelled or pruned
                continue
            r, c = int(y * s.height), int(x * s.width)
            if not (0 <= y < 1 and 0 <= x < 1):  # TF keeps keypoints outside a crop without clip_boxes
                assert m not in _markers_left(s), (y, x, m)
                continue
            assert img[1, r, c] == 255 and int(img[0, r, c]) == m, (y, x, m, int(img[0, r, c]))
            checked += 1
    return checked


def _markers_left(s: Sample) -> set[int]:
    return {int(v) for v in s.image[0][s.image[1] == 255].tolist()}


@pytest.mark.parametrize("op", [
    functools.partial(geometric.random_horizontal_flip, probability=1.0),
    functools.partial(geometric.random_vertical_flip, probability=1.0),
    functools.partial(geometric.random_rotation90, probability=1.0),
    functools.partial(crop.random_crop_image, min_object_covered=0.0, area_range=(0.3, 1.0), overlap_thresh=0.0),
    functools.partial(crop.random_crop_image, min_object_covered=0.0, overlap_thresh=0.0, clip_boxes=False),
    functools.partial(geometric.random_pad_image, pad_color=[0.0, 0.0, 0.0]),
    functools.partial(geometric.random_absolute_pad_image, max_height_padding=30, max_width_padding=20,
                      pad_color=[0.0, 0.0, 0.0]),
    functools.partial(crop.random_crop_pad_image, min_object_covered=0.0, overlap_thresh=0.0,
                      pad_color=[0.0, 0.0, 0.0]),
    functools.partial(crop.random_crop_to_aspect_ratio, aspect_ratio=0.7, overlap_thresh=0.0),
    crop.random_pad_to_aspect_ratio,
    functools.partial(crop.ssd_random_crop, random_coef=(0.0,) * 7),
    functools.partial(geometric.random_square_crop_by_scale, max_border=8),
    functools.partial(geometric.random_self_concat_image, concat_vertical_probability=1.0,
                      concat_horizontal_probability=1.0),
], ids=lambda f: f.func.__name__ if isinstance(f, functools.partial) else f.__name__)
@pytest.mark.parametrize("seed", range(4))
def test_keypoints_follow_the_pixels(op, seed) -> None:
    rng = random.Random(seed)
    s = marked_sample(rng.randint(30, 60), rng.randint(30, 60), 3, 5, rng)
    before = s.fields["keypoints"].clone()
    s.image = s.image.to(torch.uint8) if seed % 2 else s.image
    out = op(s, random.Random(seed + 100))
    assert out.fields["keypoints"].shape[0] == out.boxes.shape[0] == out.fields["marker"].shape[0]
    check_on_markers(out)
    # a keypoint is NaN only if it was unlabelled or its marker left the image
    kept = _markers_left(out)
    for obj, mk in zip(out.fields["keypoints"].tolist(), out.fields["marker"].tolist()):
        for (y, _), m in zip(obj, mk):
            if y != y:
                assert m == 1 or m not in kept, m
    assert torch.isnan(before[0, 0]).all()


@given(n=st.integers(0, 4), seed=st.integers(0, 2**31), pairs=st.lists(st.tuples(st.integers(0, 16),
                                                                                  st.integers(0, 16)), max_size=6))
@SETTINGS
def test_flip_moves_left_right_keypoints_by_the_permutation(n, seed, pairs) -> None:
    """Property: after a horizontal flip keypoint j is keypoint perm[j] mirrored (x -> 1 - x), visibilities
    follow, and flipping twice with an involution gives the input back."""
    perm = list(range(17))
    for a, b in pairs:  # a random involution (disjoint swaps), like COCO's left/right pairs
        if perm[a] == a and perm[b] == b:
            perm[a], perm[b] = b, a
    g = torch.Generator().manual_seed(seed)
    kps = torch.rand((n, 17, 2), generator=g)
    vis = torch.rand((n, 17), generator=g) > 0.3
    s = make_sample(torch.zeros((3, 8, 8)), torch.rand((n, 4), generator=g).sort(1).values, torch.ones(n),
                    keypoints=kps.clone(), keypoint_visibilities=vis.clone())
    out = geometric.random_horizontal_flip(s, random.Random(0), probability=1.0, keypoint_flip_permutation=perm)
    idx = torch.tensor(perm)
    torch.testing.assert_close(out.fields["keypoints"][..., 0], kps[:, idx, 0], rtol=0, atol=0)
    torch.testing.assert_close(out.fields["keypoints"][..., 1], 1.0 - kps[:, idx, 1], rtol=0, atol=1e-7)
    assert torch.equal(out.fields["keypoint_visibilities"], vis[:, idx])
    back = geometric.random_horizontal_flip(out, random.Random(0), probability=1.0, keypoint_flip_permutation=perm)
    torch.testing.assert_close(back.fields["keypoints"], kps, rtol=0, atol=1e-6)
    assert torch.equal(back.fields["keypoint_visibilities"], vis)


def test_coco_flip_permutation_on_markers() -> None:
    rng = random.Random(3)
    s = marked_sample(40, 50, 2, 17, rng)
    out = geometric.random_horizontal_flip(s, rng, probability=1.0, keypoint_flip_permutation=COCO_FLIP)
    # slot j now holds keypoint COCO_FLIP[j]: the left eye slot holds the (mirrored) right eye
    expected = s.fields["marker"][:, list(COCO_FLIP)]
    assert check_on_markers(out, expected) == 2 * 17 - 1


def _step(text: str) -> preprocessor_pb2.PreprocessingStep:
    from google.protobuf import text_format

    return text_format.Parse(text, preprocessor_pb2.PreprocessingStep())


def test_builder_checks_permutations_and_refuses_autoaugment() -> None:
    perm = " ".join(f"keypoint_flip_permutation: {i}" for i in COCO_FLIP)
    aug = build_augmenter([_step(f"random_horizontal_flip {{ {perm} }}")], num_keypoints=17)
    assert aug.ops[0].keywords["keypoint_flip_permutation"] == COCO_FLIP
    with pytest.raises(ConfigError, match="needs keypoint_flip_permutation"):
        build_augmenter([_step("random_horizontal_flip {}")], num_keypoints=17)
    with pytest.raises(ConfigError, match="not a permutation of the 4 keypoints"):
        build_augmenter([_step(f"random_horizontal_flip {{ {perm} }}")], num_keypoints=4)
    with pytest.raises(UnsupportedError, match="autoaugment_image cannot be used with keypoints"):
        build_augmenter([_step("autoaugment_image { policy_name: 'v0' }")], num_keypoints=17)
    assert len(build_augmenter([_step("random_horizontal_flip {}")])) == 1  # no keypoints loaded: fine


def test_input_transform_realigns_and_prunes() -> None:
    from google.protobuf import text_format

    from odkit.inputs.dataset import InputTransform
    from odkit.inputs.resizers import build_image_resizer
    from odkit.protos import image_resizer_pb2

    resizer = build_image_resizer(text_format.Parse(
        "keep_aspect_ratio_resizer { min_dimension: 64 max_dimension: 64 pad_to_max_dimension: true }",
        image_resizer_pb2.ImageResizer()))
    t = InputTransform(resizer, num_keypoints=3, keypoint_type_weight=(1.0, 2.0, 0.5))
    kps = torch.tensor([[[0.5, 0.5], [0.25, 1.0], [0.9, 0.1]]])
    vis = torch.tensor([[True, True, False]])
    out = t(torch.zeros((3, 50, 100), dtype=torch.uint8), torch.tensor([[0.1, 0.1, 0.9, 0.9]]), torch.tensor([1]),
            torch.ones(1), random.Random(0), keypoints=kps, keypoint_visibilities=vis)
    # 50x100 -> 32x64 inside 64x64: y scales by 0.5
    torch.testing.assert_close(out["keypoints"], torch.tensor([[[0.25, 0.5], [0.125, 1.0], [0.0, 0.0]]]))
    assert out["keypoint_visibilities"].tolist() == [[True, True, False]]
    assert out["keypoint_weights"].tolist() == [[1.0, 2.0, 0.0]]
    from odkit.inputs.collate import collate_examples

    out.update(source_id="a", filename="a")
    batch = collate_examples([out], max_boxes=4)
    gt = batch["groundtruth"]
    assert gt["keypoints"].shape == (1, 4, 3, 2) and gt["keypoint_visibilities"][0, 1:].sum() == 0
    torch.testing.assert_close(gt["keypoints"][0, 0], out["keypoints"][0])
