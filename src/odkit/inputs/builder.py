"""build_input_loader: input_reader + model config (+ train_config) -> resumable DataLoader of batches."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import BatchSampler, DataLoader

from odkit.config.tracking import refuse
from odkit.data.label_map import load_label_map
from odkit.errors import ConfigError, UnsupportedError
from odkit.inputs.augment import build_augmenter
from odkit.inputs.collate import Collator
from odkit.inputs.dataset import (
    ERROR_KEY,
    DetectionDataset,
    InputTransform,
    StreamSampler,
    index_records,
    raise_carried_error,
)
from odkit.inputs.resizers import ImageResizer, build_image_resizer
from odkit.models.ssd_feature_extractors import ALIASES, SUPPORTED, normalized_to_pixels
from odkit.protos import input_reader_pb2
from odkit.runtime import plan_threads, worker_init


def model_arch(model_config: Any) -> Any:
    """The ssd / faster_rcnn / center_net sub-message of a Model proto."""
    kind = model_config.WhichOneof("model")
    if kind is None:
        raise ConfigError("model is empty", hint="set model { ssd { ... } } or model { faster_rcnn { ... } }")
    arch = getattr(model_config, kind)
    if not hasattr(arch, "image_resizer"):
        raise UnsupportedError(f"model type {kind} is not supported (it has no image_resizer)", where=f"model.{kind}")
    return arch


def resizer_for_model(model_config: Any) -> ImageResizer:
    """The model's image_resizer; for SSD the pad value is the config's in the extractor's normalised space,
    turned into pixels (TF's SSD normalises before it resizes and pads)."""
    arch = model_arch(model_config)
    pad_to_pixels = None
    if model_config.WhichOneof("model") == "ssd":
        fe_type = arch.feature_extractor.type
        if fe_type in SUPPORTED or fe_type in ALIASES:  # others are refused when the model is built

            def pad_to_pixels(values: list[float]) -> list[float]:
                return normalized_to_pixels(fe_type, values)

    return build_image_resizer(arch.image_resizer, pad_to_pixels=pad_to_pixels)


def single_reader(reader: Any) -> Any:
    """An InputReader; a repeated eval_input_reader with exactly one entry is accepted too."""
    if hasattr(reader, "WhichOneof"):
        return reader
    readers = list(reader)
    if len(readers) != 1:
        raise ConfigError(f"expected one input reader, the config has {len(readers)}",
                          hint="pass one eval_input_reader entry")
    return readers[0]


# InputReader fields that ask for data odkit does not decode: the value that means "off", and why.
_NOT_DECODED = {
    "load_multiclass_scores": (False, "multiclass scores are not decoded"),
    "load_context_features": (False, "context features are not decoded"),
    "load_context_image_ids": (False, "context image ids are not decoded"),
    "load_dense_pose": (False, "DensePose annotations are not decoded"),
    "load_track_id": (False, "track ids are not decoded"),
    "load_keypoint_depth_features": (False, "keypoint depths are not decoded"),
    "expand_labels_hierarchy": (False, "label hierarchies are not expanded"),
    "num_additional_channels": (0, "additional image channels are not decoded"),
    "frame_index": (-1, "sequence frames are not decoded"),
}


def check_input_reader(reader: Any) -> None:
    """Refuse input_reader settings odkit does not implement (by the field's dotted path)."""
    if reader.WhichOneof("input_reader") == "external_input_reader":
        refuse(reader, "external_input_reader", "external_input_reader is not supported",
               hint="use tf_record_input_reader")
    if int(reader.input_type) == 2:
        refuse(reader, "input_type", "input_type TF_SEQUENCE_EXAMPLE is not supported", hint="use TF_EXAMPLE records")
    for name, (off, why) in _NOT_DECODED.items():
        if getattr(reader, name) != off:
            refuse(reader, name, f"{name} {getattr(reader, name)} is not supported ({why})", hint="remove it")


@dataclass(frozen=True)
class InputSpec:
    """What one input_reader (+ the model's resizer, + train_config when training) asks for; no file opened."""

    input_paths: tuple[str, ...]
    sample_1_of_n: int
    label_map_path: str
    use_display_name: bool
    shuffle: bool
    num_epochs: int
    max_boxes: int
    num_readers: int
    num_prefetch_batches: int
    transform: InputTransform


def input_spec(input_reader: Any, model_config: Any, train_config: Any = None, *, is_training: bool,
               retain_original_images: bool = False) -> InputSpec:
    """Read the input_reader (and the config around it) that build_dataset / build_input_loader use."""
    input_reader = single_reader(input_reader)
    check_input_reader(input_reader)
    arch = model_arch(model_config)
    augmenter = None
    num_keypoints = int(input_reader.num_keypoints)  # TF's decoder loads keypoints when this is > 0
    load_masks = bool(input_reader.load_instance_masks)
    if is_training and train_config is not None and len(train_config.data_augmentation_options):
        augmenter = build_augmenter(train_config.data_augmentation_options, num_keypoints, load_masks)
    transform = InputTransform(resizer_for_model(model_config), augmenter,
                               num_classes=arch.num_classes or None, retain_original_image=retain_original_images,
                               num_keypoints=num_keypoints, keypoint_type_weight=list(input_reader.keypoint_type_weight),
                               load_masks=load_masks, mask_type=input_reader_mask_type(input_reader))
    if is_training and train_config is not None:
        max_boxes = int(train_config.max_number_of_boxes)
    else:
        max_boxes = int(input_reader.max_number_of_boxes)
    return InputSpec(
        input_paths=tuple(input_reader.tf_record_input_reader.input_path),
        sample_1_of_n=int(input_reader.sample_1_of_n_examples),
        label_map_path=str(input_reader.label_map_path),
        use_display_name=bool(input_reader.use_display_name),
        shuffle=bool(input_reader.shuffle),
        num_epochs=int(input_reader.num_epochs),
        max_boxes=max_boxes,
        num_readers=int(input_reader.num_readers or 1),
        num_prefetch_batches=int(input_reader.num_prefetch_batches or 2),
        transform=transform,
    )


class InputLoader(DataLoader):
    """DataLoader over a StreamSampler that knows its position in the stream (for exact resume).

    state_dict() gives the position after the last batch handed out; load_state_dict() makes the next
    iteration start there. A finite stream (num_epochs > 0) that is read to the end starts over next time.
    """

    def __init__(self, dataset: DetectionDataset, sampler: StreamSampler, batch_size: int, drop_last: bool,
                 **kwargs: Any) -> None:
        super().__init__(dataset, batch_sampler=BatchSampler(sampler, batch_size, drop_last), **kwargs)
        self.stream = sampler

    def __iter__(self) -> Iterator[dict[str, Any]]:  # type: ignore[override]
        start = self.stream.position
        consumed = 0
        for batch in super().__iter__():
            if ERROR_KEY in batch:
                raise_carried_error(batch[ERROR_KEY])
            consumed += len(batch["source_ids"])
            self.stream.position = start + consumed
            yield batch
        if self.stream.num_epochs:
            self.stream.position = 0

    def state_dict(self) -> dict[str, int]:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.stream.load_state_dict(state)


def input_reader_mask_type(input_reader: Any) -> str:
    """The input reader's mask_type name (PNG_MASKS / NUMERICAL_MASKS; DEFAULT is TF's numerical)."""
    name = input_reader_pb2.InstanceMaskType.Name(input_reader.mask_type)
    return "PNG_MASKS" if name == "PNG_MASKS" else "NUMERICAL_MASKS"


def build_dataset(input_reader: Any, model_config: Any, train_config: Any = None, *, is_training: bool,
                  seed: int = 0, retain_original_images: bool = False) -> DetectionDataset:
    """The map-style dataset (records, augmentation when training, resizer)."""
    spec = input_spec(input_reader, model_config, train_config, is_training=is_training,
                      retain_original_images=retain_original_images)
    return dataset_from_spec(spec, seed=seed)


def dataset_from_spec(spec: InputSpec, seed: int = 0) -> DetectionDataset:
    label_map = None
    if spec.label_map_path:
        label_map = load_label_map(spec.label_map_path)
    records = index_records(list(spec.input_paths), spec.sample_1_of_n)
    return DetectionDataset(records, spec.transform, label_map=label_map, use_display_name=spec.use_display_name,
                            seed=seed)


def default_num_workers(input_reader: Any, device: str | None = None) -> int:
    """Workers from the cores actually available (odkit.runtime.plan_threads), at most num_readers
    (``input_reader`` is an InputReader or its num_readers)."""
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    readers = input_reader if isinstance(input_reader, int) else int(input_reader.num_readers or 1)
    return plan_threads(device=dev, max_workers=readers).workers


def build_input_loader(input_reader: Any, model_config: Any, train_config: Any = None, *, is_training: bool,
                       batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1,
                       num_workers: int | None = None, retain_original_images: bool = False) -> InputLoader:
    """DataLoader yielding the batch dicts of docs/ARCHITECTURE.md ("Input pipeline").

    Training: augmentation from train_config.data_augmentation_options, boxes padded to
    train_config.max_number_of_boxes, incomplete last batch dropped. Eval: no augmentation, boxes padded to
    input_reader.max_number_of_boxes. shuffle / num_epochs / sample_1_of_n_examples come from input_reader.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    spec = input_spec(input_reader, model_config, train_config, is_training=is_training,
                      retain_original_images=retain_original_images)
    dataset = dataset_from_spec(spec, seed=seed)
    sampler = StreamSampler(len(dataset), shuffle=spec.shuffle, seed=seed, num_epochs=spec.num_epochs,
                            rank=rank, world_size=world_size, even=is_training)
    resizer = dataset.transform.resizer
    workers = default_num_workers(spec.num_readers) if num_workers is None else int(num_workers)
    kwargs: dict[str, Any] = {
        "num_workers": workers,
        "collate_fn": Collator(spec.max_boxes or None, resizer.pad_value()),
        "pin_memory": torch.cuda.is_available(),
    }
    if workers > 0:
        kwargs.update(persistent_workers=True, worker_init_fn=worker_init, prefetch_factor=max(2, spec.num_prefetch_batches))
    return InputLoader(dataset, sampler, batch_size, drop_last=is_training, **kwargs)
