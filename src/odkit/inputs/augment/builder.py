"""PreprocessingStep proto -> augmentation callable (TF OD API builders/preprocessor_builder.py)."""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from typing import Any

from odkit.errors import ConfigError, UnsupportedError
from odkit.inputs.augment import autoaugment, boxes, color, crop, geometric
from odkit.inputs.augment.sample import Sample

Op = Callable[[Sample, random.Random], Sample]

_RESIZE_METHODS = {1: "area", 2: "bicubic", 3: "bilinear", 4: "nearest"}  # ResizeImage.Method
_JITTER_MODES = {0: "default", 1: "expand", 2: "shrink", 4: "expand_symmetric", 5: "shrink_symmetric",
                 6: "expand_symmetric_xy"}

REFUSED = {
    "normalize_image": "images stay uint8 [0, 255] until the model; the model's preprocess() normalises",
    "subtract_channel_mean": "images stay uint8 [0, 255] until the model; the model's preprocess() normalises",
    "scale_boxes_to_pixel_coordinates": "odkit boxes are normalized everywhere outside the model",
    "convert_class_logits_to_softmax": "needs multiclass scores, which odkit does not load",
}


def _simple(fn: Callable[..., Sample], msg: Any, *names: str) -> Op:
    return functools.partial(fn, **{n: getattr(msg, n) for n in names})


def _pair(values: Sequence[float], field: str, where: str) -> tuple[float, float] | None:
    if not values:
        return None
    if len(values) != 2:
        raise ConfigError(f"{where}.{field} must have 2 values (height, width), got {len(values)}")
    return float(values[0]), float(values[1])


def _color(values: Sequence[float], where: str) -> list[float] | None:
    if not values:
        return None
    if len(values) != 3:
        raise ConfigError(f"{where}.pad_color must have 3 values (R, G, B), got {len(values)}")
    return [float(v) for v in values]


def _permutation(values: Sequence[int], field: str, where: str, num_keypoints: int) -> tuple[int, ...]:
    """A keypoint permutation checked against the loaded keypoint count (TF gathers with it)."""
    perm = tuple(int(v) for v in values)
    if num_keypoints and perm and (len(perm) != num_keypoints or sorted(perm) != list(range(num_keypoints))):
        raise ConfigError(f"{where}.{field} {list(perm)} is not a permutation of the {num_keypoints} keypoints "
                          "(input reader num_keypoints)")
    return perm


# ops that change the geometry without moving keypoints, in TF as in odkit: refused when keypoints are loaded
NO_KEYPOINTS = {"autoaugment_image": "its translations / shears / rotations move boxes only (as in the TF OD API)"}

# ops that change the geometry without moving masks (TF's do not take masks either): refused with masks
NO_MASKS = {"autoaugment_image": "its translations / shears / rotations move boxes only (as in the TF OD API)"}


def build_step(step: Any, num_keypoints: int = 0, load_masks: bool = False) -> Op:
    """One PreprocessingStep -> op(sample, rng) -> sample. ``num_keypoints``: keypoints the input loads;
    ``load_masks``: instance masks are loaded (ops that cannot move them are refused by name)."""
    kind = step.WhichOneof("preprocessing_step")
    if kind is None:
        raise ConfigError("data_augmentation_options entry is empty")
    if kind in REFUSED:
        raise UnsupportedError(f"data_augmentation_options {kind} is not supported: {REFUSED[kind]}",
                               hint="remove it or pass --allow_unsupported")
    c = getattr(step, kind)
    where = f"data_augmentation_options.{kind}"
    if load_masks and kind in NO_MASKS:
        raise UnsupportedError(f"{where} cannot be used with instance masks: {NO_MASKS[kind]}",
                               hint="remove it or set the input reader's load_instance_masks to false")
    if num_keypoints and kind in NO_KEYPOINTS:
        raise UnsupportedError(f"{where} cannot be used with keypoints: {NO_KEYPOINTS[kind]}",
                               hint="remove it or set the input reader's num_keypoints to 0")
    if kind in ("random_horizontal_flip", "random_vertical_flip"):
        perm = _permutation(c.keypoint_flip_permutation, "keypoint_flip_permutation", where, num_keypoints)
        if num_keypoints and not perm:  # TF: "keypoints are provided but keypoints_flip_permutation is not"
            raise ConfigError(f"{where} needs keypoint_flip_permutation when keypoints are loaded "
                              f"(input reader num_keypoints {num_keypoints})",
                              hint="list the index each keypoint takes after the flip, e.g. 0 2 1 for nose, "
                                   "left eye, right eye")
        return functools.partial(getattr(geometric, kind), probability=c.probability, keypoint_flip_permutation=perm)
    if kind == "random_rotation90":
        perm = _permutation(c.keypoint_rot_permutation, "keypoint_rot_permutation", where, num_keypoints)
        return functools.partial(geometric.random_rotation90, probability=c.probability,
                                 keypoint_rot_permutation=perm)
    if kind == "random_pixel_value_scale":
        return _simple(color.random_pixel_value_scale, c, "minval", "maxval")
    if kind == "random_image_scale":
        return _simple(geometric.random_image_scale, c, "min_scale_ratio", "max_scale_ratio")
    if kind == "random_rgb_to_gray":
        return _simple(color.random_rgb_to_gray, c, "probability")
    if kind == "rgb_to_gray":
        return color.rgb_to_gray
    if kind == "random_adjust_brightness":
        return _simple(color.random_adjust_brightness, c, "max_delta")
    if kind in ("random_adjust_contrast", "random_adjust_saturation"):
        return _simple(getattr(color, kind), c, "min_delta", "max_delta")
    if kind == "random_adjust_hue":
        return _simple(color.random_adjust_hue, c, "max_delta")
    if kind == "random_distort_color":
        return _simple(color.random_distort_color, c, "color_ordering")
    if kind == "adjust_gamma":
        return _simple(color.adjust_gamma, c, "gamma", "gain")
    if kind == "random_jitter_boxes":
        if c.jitter_mode not in _JITTER_MODES:
            raise ConfigError(f"{where}.jitter_mode {c.jitter_mode} is not valid")
        return functools.partial(boxes.random_jitter_boxes, ratio=c.ratio, jitter_mode=_JITTER_MODES[c.jitter_mode])
    if kind == "random_crop_image":
        return functools.partial(crop.random_crop_image, min_object_covered=c.min_object_covered,
                                 aspect_ratio_range=(c.min_aspect_ratio, c.max_aspect_ratio),
                                 area_range=(c.min_area, c.max_area), overlap_thresh=c.overlap_thresh,
                                 clip_boxes=c.clip_boxes, random_coef=c.random_coef)
    if kind == "random_pad_image":
        if c.HasField("min_image_height") != c.HasField("min_image_width"):
            raise ConfigError(f"{where}: set both min_image_height and min_image_width or neither")
        if c.HasField("max_image_height") != c.HasField("max_image_width"):
            raise ConfigError(f"{where}: set both max_image_height and max_image_width or neither")
        mn = (c.min_image_height, c.min_image_width) if c.HasField("min_image_height") else None
        mx = (c.max_image_height, c.max_image_width) if c.HasField("max_image_height") else None
        return functools.partial(geometric.random_pad_image, min_image_size=mn, max_image_size=mx,
                                 pad_color=_color(c.pad_color, where))
    if kind == "random_absolute_pad_image":
        return functools.partial(geometric.random_absolute_pad_image, max_height_padding=c.max_height_padding,
                                 max_width_padding=c.max_width_padding, pad_color=_color(c.pad_color, where))
    if kind == "random_crop_pad_image":
        kw: dict[str, Any] = {}
        for f in ("min_padded_size_ratio", "max_padded_size_ratio"):
            p = _pair(getattr(c, f), f, where)
            if p:
                kw[f] = p
        return functools.partial(crop.random_crop_pad_image, min_object_covered=c.min_object_covered,
                                 aspect_ratio_range=(c.min_aspect_ratio, c.max_aspect_ratio),
                                 area_range=(c.min_area, c.max_area), overlap_thresh=c.overlap_thresh,
                                 clip_boxes=c.clip_boxes, random_coef=c.random_coef,
                                 pad_color=_color(c.pad_color, where), **kw)
    if kind == "random_crop_to_aspect_ratio":
        return _simple(crop.random_crop_to_aspect_ratio, c, "aspect_ratio", "overlap_thresh", "clip_boxes")
    if kind == "random_black_patches":
        return _simple(geometric.random_black_patches, c, "max_black_patches", "probability", "size_to_image_ratio")
    if kind == "random_resize_method":
        return _simple(geometric.random_resize_method, c, "target_height", "target_width")
    if kind == "resize_image":
        if c.new_height <= 0 or c.new_width <= 0:
            raise ConfigError(f"{where}: new_height and new_width must be > 0")
        return functools.partial(geometric.resize_image, new_height=c.new_height, new_width=c.new_width,
                                 method=_RESIZE_METHODS[c.method])
    if kind == "random_self_concat_image":
        return _simple(geometric.random_self_concat_image, c, "concat_vertical_probability",
                       "concat_horizontal_probability")
    if kind == "drop_label_probabilistically":
        return functools.partial(boxes.drop_label_probabilistically, dropped_label=c.label,
                                 drop_probability=c.drop_probability)
    if kind == "remap_labels":
        return functools.partial(boxes.remap_labels, original_labels=tuple(c.original_labels), new_label=c.new_label)
    if kind == "autoaugment_image":
        if c.policy_name != "v0":
            raise UnsupportedError(f"{where}.policy_name {c.policy_name!r} is not supported", hint="use \"v0\"")
        return functools.partial(autoaugment.autoaugment_image, policy_name="v0")
    if kind == "random_jpeg_quality":
        return _simple(color.random_jpeg_quality, c, "random_coef", "min_jpeg_quality", "max_jpeg_quality")
    if kind == "random_downscale_to_target_pixels":
        return _simple(geometric.random_downscale_to_target_pixels, c, "random_coef", "min_target_pixels",
                       "max_target_pixels")
    if kind == "random_patch_gaussian":
        return _simple(color.random_patch_gaussian, c, "random_coef", "min_patch_size", "max_patch_size",
                       "min_gaussian_stddev", "max_gaussian_stddev")
    if kind == "random_square_crop_by_scale":
        return _simple(geometric.random_square_crop_by_scale, c, "scale_min", "scale_max", "max_border",
                       "num_scales")
    if kind == "random_scale_crop_and_pad_to_square":
        return _simple(geometric.random_scale_crop_and_pad_to_square, c, "output_size", "scale_min", "scale_max")
    if kind.startswith("ssd_random_crop"):
        return _build_ssd(kind, c, where)
    raise UnsupportedError(f"data_augmentation_options {kind} is not supported")


def _build_ssd(kind: str, c: Any, where: str) -> Op:
    ops = list(c.operations)
    kw: dict[str, Any] = {}
    if ops:
        kw["min_object_covered"] = [o.min_object_covered for o in ops]
        kw["area_range"] = [(o.min_area, o.max_area) for o in ops]
        kw["overlap_thresh"] = [o.overlap_thresh for o in ops]
        kw["clip_boxes"] = [o.clip_boxes for o in ops]
        kw["random_coef"] = [o.random_coef for o in ops]
        if kind != "ssd_random_crop_fixed_aspect_ratio":
            kw["aspect_ratio_range"] = [(o.min_aspect_ratio, o.max_aspect_ratio) for o in ops]
    if kind == "ssd_random_crop":
        return functools.partial(crop.ssd_random_crop, **kw)
    if kind == "ssd_random_crop_pad":
        if ops:
            mins = [_pair(o.min_padded_size_ratio, "min_padded_size_ratio", where) or (1.0, 1.0) for o in ops]
            maxs = [_pair(o.max_padded_size_ratio, "max_padded_size_ratio", where) or (2.0, 2.0) for o in ops]
            kw["min_padded_size_ratio"] = mins
            kw["max_padded_size_ratio"] = maxs
            kw["pad_color"] = [(o.pad_color_r, o.pad_color_g, o.pad_color_b) for o in ops]
        return functools.partial(crop.ssd_random_crop_pad, **kw)
    if kind == "ssd_random_crop_fixed_aspect_ratio":
        return functools.partial(crop.ssd_random_crop_fixed_aspect_ratio, aspect_ratio=c.aspect_ratio, **kw)
    for f in ("min_padded_size_ratio", "max_padded_size_ratio"):
        p = _pair(getattr(c, f), f, where)
        if p:
            kw[f] = p
    return functools.partial(crop.ssd_random_crop_pad_fixed_aspect_ratio, aspect_ratio=c.aspect_ratio, **kw)


class Augmenter:
    """Applies the configured steps in order."""

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = list(ops)

    def __call__(self, sample: Sample, rng: random.Random) -> Sample:
        for op in self.ops:
            sample = op(sample, rng)
        return sample

    def __len__(self) -> int:
        return len(self.ops)


def build_augmenter(steps: Sequence[Any], num_keypoints: int = 0, load_masks: bool = False) -> Augmenter:
    """train_config.data_augmentation_options -> Augmenter (``num_keypoints`` > 0: keypoints are loaded;
    ``load_masks``: instance masks are loaded)."""
    return Augmenter([build_step(s, num_keypoints, load_masks) for s in steps])
