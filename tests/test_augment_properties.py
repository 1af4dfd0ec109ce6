"""Hypothesis property tests for every augmentation op: boxes stay inside the image, and each box still
covers the pixels of its object (each box is painted a unique colour; after the op, points inside the
transformed box must have that colour)."""

from __future__ import annotations

import functools
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from odkit.inputs import resizers
from odkit.inputs.augment import autoaugment, color, crop, geometric
from odkit.inputs.augment import boxes as box_ops
from odkit.inputs.augment.sample import Sample, make_sample

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def painted_samples(draw: st.DrawFn) -> tuple[Sample, int]:
    """A black image with up to 4 non-overlapping boxes (one per quadrant), each painted its own colour."""
    h = draw(st.integers(48, 112))
    w = draw(st.integers(48, 112))
    image = torch.zeros((3, h, w), dtype=torch.uint8)
    quadrants = draw(st.lists(st.integers(0, 3), min_size=1, max_size=4, unique=True))
    boxes, labels = [], []
    for q in quadrants:
        qy, qx = (q // 2) * (h // 2), (q % 2) * (w // 2)
        bh = draw(st.integers(12, h // 2 - 2))
        bw = draw(st.integers(12, w // 2 - 2))
        y0 = qy + draw(st.integers(1, h // 2 - bh - 1))
        x0 = qx + draw(st.integers(1, w // 2 - bw - 1))
        image[:, y0:y0 + bh, x0:x0 + bw] = torch.tensor(COLOURS[q], dtype=torch.uint8).view(3, 1, 1)
        boxes.append([y0 / h, x0 / w, (y0 + bh) / h, (x0 + bw) / w])
        labels.append(q + 1)
    sample = make_sample(image, torch.tensor(boxes), torch.tensor(labels))
    return sample, draw(st.integers(0, 2**31))


def assert_inside(s: Sample) -> None:
    b = s.boxes
    assert b.dtype == torch.float32
    assert torch.all(b >= 0.0) and torch.all(b <= 1.0), b
    assert torch.all(b[:, 2] >= b[:, 0]) and torch.all(b[:, 3] >= b[:, 1]), b
    n = b.shape[0]
    assert all(v.shape[0] == n for v in s.fields.values())
    assert s.image.ndim == 3 and s.image.shape[0] == 3


def assert_covers(s: Sample, allow_black: bool = False, min_px: float = 6.0) -> int:
    """Points at 30% / 50% / 70% of each (large enough) box have the box's colour. Returns boxes checked."""
    img = s.image.to(torch.float32)
    h, w = s.height, s.width
    checked = 0
    for box, label in zip(s.boxes.tolist(), s.fields["labels"].tolist()):
        y0, x0, y1, x1 = box[0] * h, box[1] * w, box[2] * h, box[3] * w
        if y1 - y0 < min_px or x1 - x0 < min_px:
            continue
        want = torch.tensor(COLOURS[label - 1], dtype=torch.float32)
        for fy in (0.3, 0.5, 0.7):
            for fx in (0.3, 0.5, 0.7):
                y = min(h - 1, int(y0 + fy * (y1 - y0)))
                x = min(w - 1, int(x0 + fx * (x1 - x0)))
                got = img[:, y, x]
                ok = torch.all((got - want).abs() <= 40)
                if allow_black:
                    ok = ok or torch.all(got <= 40)
                assert ok, f"label {label} box {box} at ({y},{x}) has {got.tolist()}, want {want.tolist()}"
        checked += 1
    return checked


GEOMETRIC_OPS = {
    "random_horizontal_flip": functools.partial(geometric.random_horizontal_flip, probability=1.0),
    "random_vertical_flip": functools.partial(geometric.random_vertical_flip, probability=1.0),
    "random_rotation90": functools.partial(geometric.random_rotation90, probability=1.0),
    "random_image_scale": geometric.random_image_scale,
    "resize_image": functools.partial(geometric.resize_image, new_height=70, new_width=90),
    "random_resize_method": functools.partial(geometric.random_resize_method, target_height=80, target_width=60),
    "random_downscale_to_target_pixels": functools.partial(geometric.random_downscale_to_target_pixels,
                                                           min_target_pixels=2000, max_target_pixels=4000),
    "random_pad_image": geometric.random_pad_image,
    "random_pad_image_colour": functools.partial(geometric.random_pad_image, pad_color=[10.0, 20.0, 30.0]),
    "random_absolute_pad_image": functools.partial(geometric.random_absolute_pad_image, max_height_padding=40,
                                                   max_width_padding=30),
    "random_self_concat_image": functools.partial(geometric.random_self_concat_image,
                                                  concat_vertical_probability=0.5,
                                                  concat_horizontal_probability=0.5),
    "random_scale_crop_and_pad_to_square": functools.partial(geometric.random_scale_crop_and_pad_to_square,
                                                             output_size=96),
    "random_square_crop_by_scale": functools.partial(geometric.random_square_crop_by_scale, max_border=16),
    "random_crop_image": crop.random_crop_image,
    "random_crop_image_pets": functools.partial(crop.random_crop_image, min_object_covered=0.0,
                                                aspect_ratio_range=(0.75, 3.0), area_range=(0.75, 1.0),
                                                overlap_thresh=0.0),
    "random_crop_pad_image": crop.random_crop_pad_image,
    "random_crop_to_aspect_ratio": functools.partial(crop.random_crop_to_aspect_ratio, aspect_ratio=1.5),
    "random_pad_to_aspect_ratio": functools.partial(crop.random_pad_to_aspect_ratio, aspect_ratio=0.5),
    "ssd_random_crop": crop.ssd_random_crop,
    "ssd_random_crop_pad": crop.ssd_random_crop_pad,
    "ssd_random_crop_fixed_aspect_ratio": crop.ssd_random_crop_fixed_aspect_ratio,
    "ssd_random_crop_pad_fixed_aspect_ratio": crop.ssd_random_crop_pad_fixed_aspect_ratio,
    "remap_labels": functools.partial(box_ops.remap_labels, original_labels=(9,), new_label=1),
    "drop_label_probabilistically": functools.partial(box_ops.drop_label_probabilistically, dropped_label=2,
                                                      drop_probability=0.5),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC_OPS))
def test_geometric_op_keeps_boxes_on_their_pixels(name: str) -> None:
    op = GEOMETRIC_OPS[name]
    checked = []

    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        out = op(sample.clone(), random.Random(seed))
        assert_inside(out)
        checked.append(assert_covers(out))

    run()
    assert sum(checked) > 0, "no box was large enough to check"


def test_black_patches_only_blacken() -> None:
    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        before = sample.boxes.clone()
        out = geometric.random_black_patches(sample.clone(), random.Random(seed), probability=0.8,
                                             size_to_image_ratio=0.2)
        assert torch.equal(out.boxes, before)
        assert_covers(out, allow_black=True)

    run()


PHOTOMETRIC_OPS = {
    "random_adjust_brightness": color.random_adjust_brightness,
    "random_adjust_contrast": color.random_adjust_contrast,
    "random_adjust_hue": color.random_adjust_hue,
    "random_adjust_saturation": color.random_adjust_saturation,
    "random_distort_color_0": color.random_distort_color,
    "random_distort_color_1": functools.partial(color.random_distort_color, color_ordering=1),
    "random_rgb_to_gray": functools.partial(color.random_rgb_to_gray, probability=0.5),
    "rgb_to_gray": color.rgb_to_gray,
    "random_pixel_value_scale": color.random_pixel_value_scale,
    "random_jpeg_quality": functools.partial(color.random_jpeg_quality, min_jpeg_quality=20),
    "random_patch_gaussian": functools.partial(color.random_patch_gaussian, max_patch_size=40),
    "adjust_gamma": functools.partial(color.adjust_gamma, gamma=0.5, gain=1.0),
}


@pytest.mark.parametrize("name", sorted(PHOTOMETRIC_OPS))
def test_photometric_op_keeps_boxes_and_range(name: str) -> None:
    op = PHOTOMETRIC_OPS[name]

    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        before = sample.boxes.clone()
        shape = sample.image.shape
        out = op(sample.clone(), random.Random(seed))
        assert torch.equal(out.boxes, before)
        assert out.image.shape == shape
        img = out.image.to(torch.float32)
        assert float(img.min()) >= 0.0 and float(img.max()) <= 255.0

    run()


@pytest.mark.parametrize("mode", ["default", "expand", "shrink", "expand_symmetric", "shrink_symmetric",
                                  "expand_symmetric_xy"])
def test_jitter_boxes_stay_inside_and_near(mode: str) -> None:
    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        before = sample.boxes.clone()
        out = box_ops.random_jitter_boxes(sample.clone(), random.Random(seed), ratio=0.1, jitter_mode=mode)
        assert_inside(out)
        size = torch.cat([before[:, 2:] - before[:, :2]] * 2, dim=1)
        assert torch.all((out.boxes - before).abs() <= 0.1 * size + 1e-6)
        if mode.startswith("expand"):
            assert torch.all(out.boxes[:, :2] <= before[:, :2] + 1e-6)
            assert torch.all(out.boxes[:, 2:] >= before[:, 2:] - 1e-6)
        if mode.startswith("shrink"):
            assert torch.all(out.boxes[:, :2] >= before[:, :2] - 1e-6)

    run()


AUTOAUGMENT_OPS = {
    "translate_x": lambda s, rng: autoaugment.translate(s, rng.uniform(-30, 30), True),
    "translate_y": lambda s, rng: autoaugment.translate(s, rng.uniform(-30, 30), False),
    "shear_x": lambda s, rng: autoaugment.shear(s, rng.uniform(-0.3, 0.3), True),
    "shear_y": lambda s, rng: autoaugment.shear(s, rng.uniform(-0.3, 0.3), False),
    "rotate": lambda s, rng: autoaugment.rotate(s, rng.uniform(-30, 30)),
}


def _centre_colour_ok(s: Sample) -> int:
    checked = 0
    h, w = s.height, s.width
    for box, label in zip(s.boxes.tolist(), s.fields["labels"].tolist()):
        if (box[2] - box[0]) * h < 8 or (box[3] - box[1]) * w < 8:
            continue
        if min(box[:2]) <= 0.0 or max(box[2:]) >= 1.0:
            # clipped at the image edge: the enclosing box of a sheared / rotated object cut by the border
            # need not have its centre on the object (hypothesis found such a shear_y case)
            continue
        y, x = int((box[0] + box[2]) / 2 * h), int((box[1] + box[3]) / 2 * w)
        got = s.image[:, y, x].to(torch.float32)
        assert torch.all((got - torch.tensor(COLOURS[label - 1], dtype=torch.float32)).abs() <= 40), (box, got)
        checked += 1
    return checked


@pytest.mark.parametrize("name", sorted(AUTOAUGMENT_OPS))
def test_autoaugment_geometric_ops_move_boxes_with_objects(name: str) -> None:
    """Rotated / sheared boxes are the enclosing box of the moved corners: the centre stays on the object."""
    checked = []

    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        out = AUTOAUGMENT_OPS[name](sample.clone(), random.Random(seed))
        assert_inside(out)
        checked.append(_centre_colour_ok(out))

    run()
    assert sum(checked) > 0


def test_autoaugment_v0_policy_keeps_boxes_inside() -> None:
    @SETTINGS
    @given(painted_samples())
    def run(case: tuple[Sample, int]) -> None:
        sample, seed = case
        out = autoaugment.autoaugment_image(sample.clone(), random.Random(seed))
        assert_inside(out)
        assert out.image.dtype == torch.uint8 and out.image.shape == sample.image.shape

    run()


RESIZERS = [
    lambda: resizers.FixedShapeResizer(64, 80),
    lambda: resizers.KeepAspectRatioResizer(48, 96, pad_to_max_dimension=True, per_channel_pad_value=[5, 5, 5]),
    lambda: resizers.KeepAspectRatioResizer(40, 70),
    lambda: resizers.PadToMultipleResizer(32),
    lambda: resizers.ConditionalShapeResizer("GREATER", 60),
    lambda: resizers.FixedShapeResizer(50, 50, method="nearest"),
]


def test_augment_then_resize_keeps_boxes_on_objects_in_the_padded_frame() -> None:
    """The whole per-example transform (augmentation chain + resizer + box realignment) of the loader."""
    from odkit.inputs.augment.builder import Augmenter
    from odkit.inputs.dataset import InputTransform

    names = sorted(GEOMETRIC_OPS)
    checked = []

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(painted_samples(), st.integers(0, len(RESIZERS) - 1),
           st.lists(st.sampled_from(names), min_size=0, max_size=3))
    def run(case: tuple[Sample, int], resizer_index: int, ops: list[str]) -> None:
        sample, seed = case
        transform = InputTransform(RESIZERS[resizer_index](), Augmenter([GEOMETRIC_OPS[n] for n in ops]))
        out = transform(sample.image, sample.boxes, sample.fields["labels"], sample.fields["weights"],
                        random.Random(seed))
        image = out["image"]
        assert image.dtype == torch.uint8
        th, tw = out["true_image_shape"][:2].tolist()
        assert th <= image.shape[1] and tw <= image.shape[2]
        boxes = out["boxes"]
        assert torch.all(boxes >= 0) and torch.all(boxes[:, 2] <= th / image.shape[1] + 1e-6)
        assert torch.all(boxes[:, 3] <= tw / image.shape[2] + 1e-6)
        result = make_sample(image, boxes, out["classes"])
        checked.append(assert_covers(result, min_px=8.0))

    run()
    assert sum(checked) > 10
