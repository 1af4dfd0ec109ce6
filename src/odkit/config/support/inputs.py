"""Config support rules for the inputs area (InputReader, TFRecordInputReader, preprocessor steps, image resizers).

Format (see odkit.config.support): ``RULES: dict[str, Rule]`` keyed ``"<ProtoMessageName>.<field_name>"``
(nested messages ``"Outer.Inner.field"``), values from odkit.config.support.rules:

    "TrainConfig.batch_size": Honoured(where="odkit.training.trainer"),
    "PostProcessing.score_converter": Values(allowed={"SIGMOID", "SOFTMAX"}, where="odkit.builders.post_processing"),
    "TrainConfig.sync_replicas": Refused(reason="TF1 parameter-server option; odkit trains synchronously"),

Add a rule only for what the code really honours; `odkit config check` reports every other set field.
Keep keys sorted; `tests/test_config_support.py` checks that each key names a real field.
"""

from __future__ import annotations

from odkit.config.support.rules import Honoured, Refused, Rule, Values

__all__ = ["RULES", "Honoured", "Refused", "Values"]

RULES: dict[str, Rule] = {
    "ConditionalShapeResizer.condition": Values(
        allowed={"GREATER", "SMALLER"}, where="odkit.inputs.resizers"
    ),
    "ConditionalShapeResizer.convert_to_grayscale": Honoured(where="odkit.inputs.resizers"),
    "ConditionalShapeResizer.resize_method": Honoured(where="odkit.inputs.resizers"),
    "ConditionalShapeResizer.size_threshold": Honoured(where="odkit.inputs.resizers"),
    "FixedShapeResizer.convert_to_grayscale": Honoured(where="odkit.inputs.resizers"),
    "FixedShapeResizer.height": Honoured(where="odkit.inputs.resizers"),
    "FixedShapeResizer.resize_method": Honoured(where="odkit.inputs.resizers"),
    "FixedShapeResizer.width": Honoured(where="odkit.inputs.resizers"),
    "ImageResizer.identity_resizer": Honoured(where="odkit.inputs.resizers"),
    "InputReader.expand_labels_hierarchy": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.filenames_shuffle_buffer_size": Honoured(
        where="odkit.inputs.dataset"
    ),  # full per-epoch permutation
    "InputReader.frame_index": Values(allowed={-1}, where="odkit.inputs.dataset"),
    "InputReader.include_source_id": Honoured(
        where="odkit.inputs.dataset"
    ),  # source_ids are always in the batch
    "InputReader.input_type": Values(allowed={"INPUT_DEFAULT", "TF_EXAMPLE"}, where="odkit.inputs.builder"),
    "InputReader.keypoint_type_weight": Honoured(where="odkit.inputs.dataset"),  # groundtruth keypoint_weights
    "InputReader.label_map_path": Honoured(where="odkit.inputs.builder"),
    "InputReader.load_context_features": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.load_context_image_ids": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.load_dense_pose": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.load_instance_masks": Honoured(where="odkit.inputs.dataset (masks through augmentation / resize)"),
    "InputReader.load_keypoint_depth_features": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.load_multiclass_scores": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.load_track_id": Values(allowed={False}, where="odkit.inputs.dataset"),
    "InputReader.mask_type": Values(allowed={"DEFAULT", "NUMERICAL_MASKS", "PNG_MASKS"}, where="odkit.data.example"),
    "InputReader.max_number_of_boxes": Honoured(where="odkit.inputs.collate"),
    "InputReader.name": Honoured(where="odkit.inputs.builder"),
    "InputReader.num_additional_channels": Values(allowed={0}, where="odkit.inputs.dataset"),
    "InputReader.num_epochs": Honoured(where="odkit.inputs.dataset"),
    "InputReader.num_keypoints": Honoured(where="odkit.inputs.dataset"),  # > 0 loads groundtruth keypoints
    "InputReader.num_prefetch_batches": Honoured(where="odkit.inputs.builder"),  # DataLoader prefetch_factor
    "InputReader.num_readers": Honoured(
        where="odkit.inputs.builder"
    ),  # default DataLoader num_workers = min(num_readers, cpus)
    "InputReader.sample_1_of_n_examples": Honoured(where="odkit.inputs.dataset"),
    "InputReader.shuffle": Honoured(where="odkit.inputs.dataset"),
    "InputReader.shuffle_buffer_size": Honoured(
        where="odkit.inputs.dataset"
    ),  # full per-epoch permutation (at least as random)
    "InputReader.use_display_name": Honoured(where="odkit.inputs.dataset"),
    "KeepAspectRatioResizer.convert_to_grayscale": Honoured(where="odkit.inputs.resizers"),
    "KeepAspectRatioResizer.max_dimension": Honoured(where="odkit.inputs.resizers"),
    "KeepAspectRatioResizer.min_dimension": Honoured(where="odkit.inputs.resizers"),
    "KeepAspectRatioResizer.pad_to_max_dimension": Honoured(where="odkit.inputs.resizers"),
    "KeepAspectRatioResizer.per_channel_pad_value": Honoured(where="odkit.inputs.resizers"),
    "KeepAspectRatioResizer.resize_method": Honoured(where="odkit.inputs.resizers"),
    "PadToMultipleResizer.multiple": Honoured(where="odkit.inputs.resizers"),
    "PreprocessingStep.adjust_gamma": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.autoaugment_image": Honoured(where="odkit.inputs.augment.autoaugment"),  # v0 only; others refused when built
    "PreprocessingStep.convert_class_logits_to_softmax": Refused(
        reason="needs multiclass scores, which odkit does not load"
    ),
    "PreprocessingStep.drop_label_probabilistically": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.normalize_image": Refused(
        reason="images stay uint8 [0, 255] until the model; the model's preprocess() normalises"
    ),
    "PreprocessingStep.random_absolute_pad_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_adjust_brightness": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_adjust_contrast": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_adjust_hue": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_adjust_saturation": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_black_patches": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_crop_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_crop_pad_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_crop_to_aspect_ratio": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_distort_color": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_downscale_to_target_pixels": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_horizontal_flip": Honoured(
        where="odkit.inputs.augment.builder"
    ),  # keypoint permutations honoured when keypoints are loaded
    "PreprocessingStep.random_image_scale": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_jitter_boxes": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_jpeg_quality": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_pad_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_patch_gaussian": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_pixel_value_scale": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_resize_method": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_rgb_to_gray": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_rotation90": Honoured(
        where="odkit.inputs.augment.builder"
    ),  # keypoint permutations honoured when keypoints are loaded
    "PreprocessingStep.random_scale_crop_and_pad_to_square": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_self_concat_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_square_crop_by_scale": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.random_vertical_flip": Honoured(
        where="odkit.inputs.augment.builder"
    ),  # keypoint permutations honoured when keypoints are loaded
    "PreprocessingStep.remap_labels": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.resize_image": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.rgb_to_gray": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.scale_boxes_to_pixel_coordinates": Refused(
        reason="odkit keeps boxes normalized outside the model"
    ),
    "PreprocessingStep.ssd_random_crop": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.ssd_random_crop_fixed_aspect_ratio": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.ssd_random_crop_pad": Honoured(where="odkit.inputs.augment.builder"),
    "PreprocessingStep.ssd_random_crop_pad_fixed_aspect_ratio": Honoured(
        where="odkit.inputs.augment.builder"
    ),
    "PreprocessingStep.subtract_channel_mean": Refused(
        reason="images stay uint8 [0, 255] until the model; the model's preprocess() normalises"
    ),
    "TFRecordInputReader.input_path": Honoured(where="odkit.inputs.dataset"),
    "TrainConfig.data_augmentation_options": Honoured(
        where="odkit.inputs.augment.builder"
    ),  # each step is judged by its own rules
    "TrainConfig.max_number_of_boxes": Honoured(where="odkit.inputs.collate"),
    "TrainConfig.unpad_groundtruth_tensors": Honoured(
        where="odkit.inputs.collate"
    ),  # batches always carry num_boxes
}
