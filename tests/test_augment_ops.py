"""Augmentation ops: TF OD API formulas, crop rules, proto builder defaults and refusals."""

from __future__ import annotations

import functools
import random
from pathlib import Path

import pytest
import torch
from google.protobuf import text_format

from odkit.errors import ConfigError, UnsupportedError
from odkit.inputs.augment import build_augmenter, build_step, color, crop, geometric, make_sample
from odkit.inputs.augment.sample import crop_boxes
from odkit.protos import preprocessor_pb2


def _sample(h: int = 40, w: int = 60, value: int = 100, boxes=((0.25, 0.25, 0.5, 0.5),), labels=(1,)):
    image = torch.full((3, h, w), value, dtype=torch.uint8)
    return make_sample(image, torch.tensor(boxes, dtype=torch.float32), torch.tensor(labels))


def _step(text: str):
    msg = preprocessor_pb2.PreprocessingStep()
    text_format.Parse(text, msg)
    return build_step(msg)


def test_flip_and_rotation_box_maths() -> None:
    s = _sample(boxes=((0.1, 0.2, 0.3, 0.6),))
    geometric.random_horizontal_flip(s, random.Random(0), probability=1.0)
    assert torch.allclose(s.boxes, torch.tensor([[0.1, 0.4, 0.3, 0.8]]))
    geometric.random_vertical_flip(s, random.Random(0), probability=1.0)
    assert torch.allclose(s.boxes, torch.tensor([[0.7, 0.4, 0.9, 0.8]]))
    s = _sample(boxes=((0.1, 0.2, 0.3, 0.6),))
    img = s.image.clone()
    img[:, 0, 0] = 7
    s.image = img
    geometric.random_rotation90(s, random.Random(0), probability=1.0)
    # counter-clockwise: top-left pixel goes to bottom-left; ymin' = 1 - xmax, xmin' = ymin
    assert s.image.shape == (3, 60, 40) and int(s.image[0, -1, 0]) == 7
    assert torch.allclose(s.boxes, torch.tensor([[0.4, 0.1, 0.8, 0.3]]))


def test_photometric_formulas_match_tf() -> None:
    s = _sample(value=100)
    color.adjust_brightness(s, 0.1)
    assert torch.allclose(s.image, torch.full_like(s.image, 100 + 25.5))
    s = _sample(value=100)
    s.image = s.image.clone()
    s.image[:, :, :30] = 200  # per-channel mean 150
    color.adjust_contrast(s, 2.0)
    assert float(s.image[0, 0, 0]) == pytest.approx(250.0) and float(s.image[0, 0, 59]) == pytest.approx(50.0)
    red = make_sample(torch.tensor([255, 0, 0], dtype=torch.uint8).view(3, 1, 1).expand(3, 4, 4).clone(),
                      torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    color.adjust_hue(red, 1.0 / 3.0)
    assert torch.allclose(red.image[:, 0, 0], torch.tensor([0.0, 255.0, 0.0]), atol=1e-3)
    pink = make_sample(torch.tensor([255, 128, 128], dtype=torch.uint8).view(3, 1, 1).expand(3, 2, 2).clone(),
                       torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64))
    color.adjust_saturation(pink, 0.0)  # HSV with s = 0 -> r = g = b = v = max channel
    assert torch.allclose(pink.image[:, 0, 0], torch.full((3,), 255.0), atol=1e-3)


def test_hsv_round_trip() -> None:
    x = torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(color.hsv_to_rgb(color.rgb_to_hsv(x)), x, atol=1e-5)


def test_crop_box_rules_follow_tf() -> None:
    s = _sample(boxes=((0.0, 0.0, 0.2, 0.2), (0.4, 0.4, 0.6, 0.6), (0.45, 0.0, 0.55, 0.55)), labels=(1, 2, 3))
    # window covers [0.5, 1] x [0.5, 1]: box 1 is outside, box 2 has 25% inside, box 3 has 9% inside
    crop_boxes(s, torch.tensor([0.5, 0.5, 1.0, 1.0]), overlap_thresh=0.2, clip_boxes=True)
    assert s.fields["labels"].tolist() == [2]
    assert torch.allclose(s.boxes, torch.tensor([[0.0, 0.0, 0.2, 0.2]]))
    s = _sample(boxes=((0.4, 0.4, 0.6, 0.6),))
    crop_boxes(s, torch.tensor([0.5, 0.5, 1.0, 1.0]), overlap_thresh=0.0, clip_boxes=False)
    assert torch.allclose(s.boxes, torch.tensor([[-0.2, -0.2, 0.2, 0.2]]))


def test_random_crop_min_object_covered_one_keeps_whole_box() -> None:
    for seed in range(20):
        s = _sample(h=80, w=80, boxes=((0.3, 0.4, 0.6, 0.7),))
        crop.random_crop_image(s, random.Random(seed), min_object_covered=1.0, area_range=(0.1, 1.0))
        assert s.boxes.shape[0] == 1
        b = s.boxes[0]
        # whole box inside the crop: its size in crop pixels equals its original pixel size (24 x 24)
        assert float((b[2] - b[0]) * s.height) == pytest.approx(24, abs=0.01)
        assert float((b[3] - b[1]) * s.width) == pytest.approx(24, abs=0.01)


def test_random_coef_one_keeps_original() -> None:
    s = _sample()
    out = crop.random_crop_image(s.clone(), random.Random(0), random_coef=1.0, min_object_covered=0.0)
    assert torch.equal(out.image, s.image) and torch.equal(out.boxes, s.boxes)


def test_sample_distorted_bounding_box_respects_ranges() -> None:
    rng = random.Random(3)
    for _ in range(50):
        y, x, h, w = crop.sample_distorted_bounding_box(rng, 100, 200, torch.zeros(0, 4), 0.0, (0.5, 2.0),
                                                        (0.3, 0.6))
        assert 0 <= y and y + h <= 100 and 0 <= x and x + w <= 200
        area = h * w / 20000
        assert 0.29 <= area <= 0.61 or (h, w) == (100, 200)


def test_pad_image_places_image_and_uses_mean_colour() -> None:
    s = _sample(h=10, w=10, value=50, boxes=((0.0, 0.0, 1.0, 1.0),))
    geometric.random_pad_image(s, random.Random(1), min_image_size=(20, 30), max_image_size=(21, 31))
    assert s.image.shape == (3, 20, 30)
    assert torch.all(s.image == 50)  # mean colour padding of a flat image
    b = s.boxes[0]
    assert float((b[2] - b[0]) * 20) == pytest.approx(10) and float((b[3] - b[1]) * 30) == pytest.approx(10)


def test_builder_defaults_and_parameters() -> None:
    op = _step("random_crop_image { min_aspect_ratio: 0.5 max_aspect_ratio: 1.7 random_coef: 0.25 }")
    assert op.func is crop.random_crop_image
    assert op.keywords["aspect_ratio_range"] == (0.5, pytest.approx(1.7))
    assert op.keywords["min_object_covered"] == 1.0 and op.keywords["overlap_thresh"] == pytest.approx(0.3)
    assert op.keywords["random_coef"] == 0.25
    op = _step("random_horizontal_flip {}")
    assert op.keywords == {"probability": 0.5, "keypoint_flip_permutation": ()}
    op = _step("ssd_random_crop {}")
    assert op.func is crop.ssd_random_crop and op.keywords == {}
    op = _step("ssd_random_crop { operations { min_object_covered: 0.5 min_aspect_ratio: 0.5 max_aspect_ratio: 2 "
               "min_area: 0.1 max_area: 1 overlap_thresh: 0.5 random_coef: 0.15 } }")
    assert op.keywords["min_object_covered"] == [0.5] and op.keywords["clip_boxes"] == [True]
    op = _step("random_absolute_pad_image { max_height_padding: 200 max_width_padding: 200 pad_color: [0, 0, 0] }")
    assert op.keywords["pad_color"] == [0.0, 0.0, 0.0]
    op = _step("random_adjust_hue {}")
    assert op.keywords["max_delta"] == pytest.approx(0.02)


@pytest.mark.parametrize("text", ["normalize_image { original_minval: 0 original_maxval: 255 }",
                                  "subtract_channel_mean { means: [1, 2, 3] }",
                                  'autoaugment_image { policy_name: "v1" }'])
def test_refused_steps_raise(text: str) -> None:
    with pytest.raises(UnsupportedError):
        _step(text)


def test_bad_step_values_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="pad_color"):
        _step("random_pad_image { pad_color: [1, 2] }")
    with pytest.raises(ConfigError, match="min_image_width"):
        _step("random_pad_image { min_image_height: 10 }")


def test_augmenter_is_deterministic_for_a_seed() -> None:
    steps = []
    for text in ["random_horizontal_flip {}", "ssd_random_crop {}", "random_adjust_brightness {}",
                 "random_distort_color {}"]:
        m = preprocessor_pb2.PreprocessingStep()
        text_format.Parse(text, m)
        steps.append(m)
    aug = build_augmenter(steps)
    img = torch.randint(0, 255, (3, 50, 70), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))

    def run(seed: int):
        s = make_sample(img.clone(), torch.tensor([[0.2, 0.2, 0.7, 0.8]]), torch.tensor([1]))
        return aug(s, random.Random(seed))

    a, b, c = run(5), run(5), run(6)
    assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes)
    assert not (a.image.shape == c.image.shape and torch.equal(a.image, c.image))


def test_all_augmentations_of_the_reference_configs_build(compat_dir: Path) -> None:
    from odkit.config.loader import load

    built = 0
    for path in sorted((compat_dir / "tfod_configs").glob("*.config")):
        cfg = load(path)
        for step in cfg.train_config.data_augmentation_options:
            op = build_step(step)
            s = _sample(h=64, w=96, boxes=((0.2, 0.2, 0.6, 0.7),))
            out = op(s, random.Random(built))
            assert out.image.ndim == 3
            built += 1
    assert built > 50


def test_partial_ops_are_picklable() -> None:
    import pickle

    op = _step("random_crop_image {}")
    assert isinstance(pickle.loads(pickle.dumps(op)), functools.partial)
