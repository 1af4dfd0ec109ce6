"""Map-style detection dataset over TFRecord shards, and the resumable, rank-aware stream sampler."""

from __future__ import annotations

import os
import random
import types
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from odkit import errors
from odkit.data.example import decode_detection_example
from odkit.data.image_io import decode_image
from odkit.data.tfrecord import TFRecordReader, expand_paths, read_record
from odkit.errors import DataError, OdkitError
from odkit.inputs.augment import Augmenter, make_sample, to_uint8
from odkit.inputs.augment.geometric import resize_masks
from odkit.inputs.resizers import ImageResizer

ERROR_KEY = "__odkit_error__"


def raise_carried_error(info: tuple[str, str, str | None, str | None]) -> None:
    """Re-raise an OdkitError that a DataLoader worker returned as data."""
    name, message, where, hint = info
    cls = getattr(errors, name, OdkitError)
    if not (isinstance(cls, type) and issubclass(cls, OdkitError)):
        cls = OdkitError
    raise cls(message, where=where, hint=hint)


@dataclass(frozen=True)
class RecordRef:
    path: str
    offset: int


def index_records(input_paths: Sequence[str], sample_1_of_n: int = 1) -> list[RecordRef]:
    """(path, offset) of every record of the expanded input paths, in file order; keeps every n-th."""
    if not input_paths:
        raise DataError("input reader has no tf_record_input_reader.input_path",
                        hint="set tf_record_input_reader { input_path: \"train.record-?????-of-000NN\" }")
    refs = [RecordRef(p, off) for p in expand_paths(list(input_paths)) for off in TFRecordReader(p).index()]
    n = max(1, int(sample_1_of_n))
    refs = refs[::n]
    if not refs:
        raise DataError(f"no records found in {', '.join(input_paths)}")
    return refs


class InputTransform:
    """Augment (training) -> resize with the model's image_resizer -> realign boxes -> uint8 example dict.

    With ``num_keypoints`` > 0 (the input reader's), keypoints travel too: unlabelled ones are NaN through the
    augmentations (TF's decoder), and the example gets ``keypoints`` [N, K, 2] (y, x) in the resized frame
    with 0 where not labelled, ``keypoint_visibilities`` [N, K] (labelled and not pruned by a crop) and
    ``keypoint_weights`` (``keypoint_type_weight`` x visibility, TF's groundtruth_keypoint_weights).

    With ``load_masks`` (the input reader's load_instance_masks) the records' instance masks (``mask_type``)
    travel too (augmentations move them with the image), are resized like the image with nearest sampling
    and padded with zeros: ``masks`` uint8 [N, H, W] in the model-input frame.
    """

    def __init__(self, resizer: ImageResizer, augmenter: Augmenter | None = None, num_classes: int | None = None,
                 retain_original_image: bool = False, num_keypoints: int = 0,
                 keypoint_type_weight: Sequence[float] = (), load_masks: bool = False,
                 mask_type: str = "NUMERICAL_MASKS") -> None:
        self.resizer = resizer
        self.augmenter = augmenter
        self.num_classes = num_classes
        self.retain_original_image = retain_original_image
        self.num_keypoints = int(num_keypoints)
        self.keypoint_type_weight = tuple(float(v) for v in keypoint_type_weight)
        self.load_masks = bool(load_masks)
        self.mask_type = mask_type

    def __call__(self, image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
                 rng: random.Random, where: str = "", flags: dict[str, torch.Tensor] | None = None,
                 keypoints: torch.Tensor | None = None, keypoint_visibilities: torch.Tensor | None = None,
                 masks: torch.Tensor | None = None, area: torch.Tensor | None = None) -> dict[str, Any]:
        """``flags``: optional per-box bool tensors (difficult, group_of) carried through augmentation;
        ``keypoints`` [N, K, 2] (y, x) normalized and ``keypoint_visibilities`` bool [N, K] when loaded;
        ``area`` float [N] (image/object/area, pixels of the original image; TF's groundtruth_area for eval)."""
        original = image
        keep = torch.isfinite(boxes).all(dim=1) & (labels > 0)  # TF drops NaN boxes and unknown (-1) classes
        if self.num_classes is not None and bool((labels[keep] > self.num_classes).any()):
            bad = int(labels[keep].max())
            raise DataError(f"class id {bad} is larger than num_classes {self.num_classes}", where=where,
                            hint="check the label map / num_classes in the model config")
        extra = {k: v.to(torch.bool)[keep] for k, v in (flags or {}).items()}
        if keypoints is not None:
            vis = torch.ones(keypoints.shape[:2], dtype=torch.bool) if keypoint_visibilities is None \
                else keypoint_visibilities.to(torch.bool)
            nan = torch.full_like(keypoints, float("nan"))  # TF's decoder: unlabelled keypoints are NaN
            extra["keypoints"] = torch.where(vis[..., None], keypoints.to(torch.float32), nan)[keep]
            extra["keypoint_visibilities"] = vis[keep]
        if masks is not None:
            extra["masks"] = masks.to(torch.uint8)[keep]
        if area is not None:
            extra["area"] = area.to(torch.float32)[keep]
        sample = make_sample(image, boxes[keep], labels[keep], weights[keep], **extra)
        if self.augmenter is not None and len(self.augmenter):
            sample = self.augmenter(sample, rng)
            b = sample.boxes  # crops can leave zero-area slivers; they would give inf box-coder targets
            sample.keep((b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1]))
        image_out, true_shape = self.resizer.resize_uint8(to_uint8(sample.image))
        out_h, out_w = int(image_out.shape[-2]), int(image_out.shape[-1])
        th, tw = int(true_shape[0]), int(true_shape[1])
        scale = torch.tensor([th / out_h, tw / out_w, th / out_h, tw / out_w], dtype=torch.float32)
        result = {
            "image": image_out,
            "true_image_shape": true_shape,
            "boxes": (sample.boxes * scale).to(torch.float32),
            "classes": sample.fields["labels"].to(torch.int64),
            "weights": sample.fields["weights"].to(torch.float32),
            "original_size": torch.tensor([original.shape[-2], original.shape[-1]], dtype=torch.int64),
        }
        if masks is not None:
            result["masks"] = _masks_out(sample.fields["masks"], th, tw, out_h, out_w)
        for k in extra:
            if k == "area":
                result[k] = sample.fields[k].to(torch.float32)
            elif k not in ("keypoints", "keypoint_visibilities", "masks"):
                result[k] = sample.fields[k].to(torch.bool)
        if keypoints is not None:
            result.update(self._keypoints_out(sample.fields["keypoints"], sample.fields["keypoint_visibilities"],
                                              scale[:2], where))
        if self.retain_original_image:
            result["original_image"] = original
        return result


    def _keypoints_out(self, kp: torch.Tensor, vis: torch.Tensor, scale: torch.Tensor, where: str
                       ) -> dict[str, torch.Tensor]:
        """Final keypoint tensors: realigned to the resized frame; NaN -> 0 and invisible (inputs.py)."""
        vis = vis & torch.isfinite(kp).all(dim=-1)
        kp = torch.where(vis[..., None], kp * scale, torch.zeros_like(kp)).to(torch.float32)
        type_weight = torch.ones(kp.shape[1])
        if self.keypoint_type_weight:
            if len(self.keypoint_type_weight) != kp.shape[1]:
                raise DataError(f"keypoint_type_weight has {len(self.keypoint_type_weight)} values for "
                                f"{kp.shape[1]} keypoints", where=where, hint="give one weight per keypoint")
            type_weight = torch.tensor(self.keypoint_type_weight, dtype=torch.float32)
        return {"keypoints": kp, "keypoint_visibilities": vis, "keypoint_weights": type_weight * vis.float()}


def _masks_out(masks: torch.Tensor, th: int, tw: int, out_h: int, out_w: int) -> torch.Tensor:
    """Masks resized to the image's resized size (nearest, as TF's resizers) and zero padded to the input."""
    m = resize_masks(masks, th, tw)
    if (th, tw) == (out_h, out_w):
        return m
    out = torch.zeros((m.shape[0], out_h, out_w), dtype=torch.uint8)
    out[:, :th, :tw] = m
    return out


class DetectionDataset(Dataset):
    """Records -> example dicts. Items are record positions or (position, epoch) from StreamSampler."""

    def __init__(self, records: Sequence[RecordRef], transform: InputTransform, label_map: Any = None,
                 use_display_name: bool = False, seed: int = 0) -> None:
        self.records = list(records)
        self.transform = transform
        self.seed = int(seed)
        self.label_map = label_map
        if label_map is not None and use_display_name:
            self.label_map = types.SimpleNamespace(name_to_id=label_map.display_name_to_id())

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, Any]:
        try:
            return self.load(item)
        except OdkitError as exc:  # carried to the main process as data, re-raised there as one line
            return {ERROR_KEY: (type(exc).__name__, exc.message, exc.where, exc.hint)}

    def load(self, item: int | tuple[int, int]) -> dict[str, Any]:
        """One example dict; OdkitError on bad data."""
        idx, epoch = (item, 0) if isinstance(item, int) else item
        ref = self.records[idx]
        where = f"{os.path.basename(ref.path)}:offset {ref.offset}"
        k = self.transform.num_keypoints
        ex = decode_detection_example(read_record(ref.path, ref.offset), where=where, label_map=self.label_map,
                                      ignore_unsupported=True, num_keypoints=k or None,
                                      load_instance_masks=self.transform.load_masks,
                                      mask_type=self.transform.mask_type)
        image = decode_image(ex.image, where=where)
        rng = random.Random(f"{self.seed}:{epoch}:{idx}")
        kp: dict[str, torch.Tensor] = {}
        if k:  # TF: visibility 1 or 2 is labelled
            kp = {"keypoints": torch.from_numpy(np.asarray(ex.keypoints, np.float32)).reshape(-1, k, 2),
                  "keypoint_visibilities": torch.from_numpy(np.asarray(ex.keypoint_visibility) > 0).reshape(-1, k)}
        if ex.masks is not None:
            if ex.masks.shape[1:] != tuple(image.shape[-2:]):
                raise DataError(f"masks are {ex.masks.shape[2]}x{ex.masks.shape[1]}, the decoded image "
                                f"{image.shape[-1]}x{image.shape[-2]}", where=where)
            kp["masks"] = torch.from_numpy(np.ascontiguousarray(ex.masks))
        area = getattr(ex, "area", None)
        if area is not None and len(area) and len(area) == len(ex.labels):
            kp["area"] = torch.from_numpy(np.asarray(area, np.float32))
        out = self.transform(image, torch.from_numpy(np.asarray(ex.boxes, np.float32)).reshape(-1, 4),
                             torch.from_numpy(np.asarray(ex.labels, np.int64)),
                             torch.from_numpy(np.asarray(ex.weights, np.float32)), rng, where,
                             flags=_box_flags(ex), **kp)
        out["source_id"] = ex.source_id or ex.filename or where
        out["filename"] = ex.filename
        return out


def _box_flags(ex: Any) -> dict[str, torch.Tensor]:
    """difficult / group_of / is_crowd per box when the record has them (evaluation uses them, as TF's
    groundtruth_difficult / group_of / is_crowd; training ignores them)."""
    n = len(ex.labels)
    out = {}
    for key in ("difficult", "group_of", "is_crowd"):
        v = getattr(ex, key, None)
        if v is not None and len(v) == n:
            out[key] = torch.from_numpy(np.asarray(v, dtype=bool)).reshape(n)
    return out


class StreamSampler(Sampler):
    """Deterministic stream of (record index, epoch) for one rank.

    Each epoch is a permutation of all records (seeded by seed + epoch) when shuffling, file order
    otherwise; rank r takes every world_size-th element, so ranks are disjoint (DataLoader workers then
    split this rank's stream). With even=True, the epoch is padded by wrap-around so every rank has the
    same length. num_epochs=0 repeats forever. The position (samples of this rank already consumed) is
    saved with state_dict() and restored with load_state_dict() for exact resume.
    """

    def __init__(self, num_records: int, *, shuffle: bool, seed: int = 0, num_epochs: int = 0, rank: int = 0,
                 world_size: int = 1, even: bool = True) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} not in [0, {world_size})")
        self.num_records, self.shuffle, self.seed = num_records, shuffle, int(seed)
        self.num_epochs, self.rank, self.world_size, self.even = int(num_epochs), rank, world_size, even
        self.position = 0

    @property
    def epoch_length(self) -> int:
        """Samples per epoch for this rank."""
        if self.even:
            return -(-self.num_records // self.world_size)
        return len(range(self.rank, self.num_records, self.world_size))

    def _order(self, epoch: int) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            order = torch.randperm(self.num_records, generator=g).tolist()
        else:
            order = list(range(self.num_records))
        if self.even:
            total = self.epoch_length * self.world_size
            order = (order * (total // max(1, len(order)) + 1))[:total]
        return order[self.rank::self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        length = self.epoch_length
        if length == 0:
            return
        epoch, i = divmod(self.position, length)
        while not self.num_epochs or epoch < self.num_epochs:
            order = self._order(epoch)
            for j in range(i, length):
                yield order[j], epoch
            epoch, i = epoch + 1, 0

    def __len__(self) -> int:
        if not self.num_epochs:
            return 2**62
        return max(0, self.num_epochs * self.epoch_length - self.position)

    def state_dict(self) -> dict[str, int]:
        e, i = divmod(self.position, max(1, self.epoch_length))
        return {"position": self.position, "epoch": e, "index": i, "seed": self.seed,
                "num_records": self.num_records, "world_size": self.world_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if int(state.get("num_records", self.num_records)) != self.num_records:
            raise DataError(f"resume: the data stream had {state['num_records']} records, now {self.num_records}",
                            hint="train on the same input files to resume exactly")
        self.position = int(state["position"])
