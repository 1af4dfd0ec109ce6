"""A tiny DetectionModel and a deterministic in-memory loader for the training-engine tests.

Other training tests (and their subprocess scripts) import this module; the tests here check the fakes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from google.protobuf import text_format
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from odkit.models.base import DetectionModel
from odkit.protos import pipeline_pb2

NUM_CLASSES = 3
IMAGE = 32


def pipeline_text(
    batch_size: int = 4,
    num_steps: int = 6,
    optimizer: str = "momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.05 } } "
    "momentum_optimizer_value: 0.9 }",
    extra: str = "",
    ema: bool = False,
) -> str:
    return (
        f"model {{ ssd {{ num_classes: {NUM_CLASSES} }} }}\n"
        f"train_config {{ batch_size: {batch_size} num_steps: {num_steps} "
        f"optimizer {{ {optimizer} use_moving_average: {'true' if ema else 'false'} moving_average_decay: 0.9 }} "
        f"{extra} }}\n"
        'train_input_reader { label_map_path: "unused.pbtxt" tf_record_input_reader { input_path: "unused" } }\n'
    )


def pipeline(**kwargs: Any) -> pipeline_pb2.TrainEvalPipelineConfig:
    return text_format.Parse(pipeline_text(**kwargs), pipeline_pb2.TrainEvalPipelineConfig())


class FakeDetector(DetectionModel):
    """Conv backbone -> pooled features -> one box + class logits, trained on the first groundtruth box."""

    def __init__(self, num_classes: int = NUM_CLASSES, use_bn: bool = True, nan_at_call: int | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.input_size = (IMAGE, IMAGE)
        self.backbone_param_prefixes = ("backbone.",)
        self.feature_extractor_param_prefixes = ("backbone.",)
        layers: list[nn.Module] = [nn.Conv2d(3, 8, 3, stride=2, padding=1)]
        if use_bn:
            layers.append(nn.BatchNorm2d(8))
        layers += [nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU()]
        self.backbone = nn.Sequential(*layers)
        self.box_head = nn.Linear(8, 4)
        self.cls_head = nn.Linear(8, num_classes + 1)
        self.nan_at_call = nan_at_call
        self.calls = 0

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        return images.float() * (2.0 / 255.0) - 1.0

    def predict(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        f = self.backbone(images).mean(dim=(2, 3))
        return {"box_encodings": self.box_head(f), "class_predictions_with_background": self.cls_head(f)}

    def loss(self, prediction_dict: dict[str, torch.Tensor], groundtruth: dict[str, torch.Tensor],
             true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        w = groundtruth["weights"][:, 0]
        loc = (F.smooth_l1_loss(prediction_dict["box_encodings"], groundtruth["boxes"][:, 0], reduction="none")
               .sum(1) * w).mean()
        cls = F.cross_entropy(prediction_dict["class_predictions_with_background"], groundtruth["classes"][:, 0])
        if self.nan_at_call is not None and self.calls >= self.nan_at_call:
            loc = loc * float("nan")
        return {"Loss/localization_loss": loc, "Loss/classification_loss": cls}

    def regularization_loss(self) -> torch.Tensor:
        return 0.5 * 1e-4 * sum((m.weight**2).sum() for m in self.modules() if isinstance(m, nn.Conv2d))

    def postprocess(self, prediction_dict: dict[str, torch.Tensor],
                    true_image_shapes: torch.Tensor) -> dict[str, torch.Tensor]:
        boxes = prediction_dict["box_encodings"].clamp(0, 1)[:, None]
        scores, classes = prediction_dict["class_predictions_with_background"][:, 1:].sigmoid().max(-1)
        b = boxes.shape[0]
        return {"detection_boxes": boxes, "detection_scores": scores[:, None],
                "detection_classes": (classes + 1).float()[:, None], "num_detections": torch.ones(b)}


def model_fn(**model_kwargs: Any):  # noqa: ANN201
    def build(model_config: Any, is_training: bool) -> FakeDetector:
        return FakeDetector(**model_kwargs)

    return build


class FakeDataset(Dataset):
    """Sample i: a dark image with one bright box; label 1 + i % NUM_CLASSES. Pure function of i."""

    def __init__(self, n: int = 24) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = torch.Generator().manual_seed(1000 + i)
        y0, x0 = torch.randint(0, IMAGE // 2, (2,), generator=g).tolist()
        h, w = torch.randint(6, IMAGE // 2, (2,), generator=g).tolist()
        img = torch.randint(0, 60, (3, IMAGE, IMAGE), generator=g, dtype=torch.uint8)
        img[:, y0 : y0 + h, x0 : x0 + w] = 200 + 20 * (i % NUM_CLASSES)
        box = torch.tensor([y0, x0, y0 + h, x0 + w], dtype=torch.float32) / IMAGE
        return {"image": img, "box": box, "label": 1 + i % NUM_CLASSES, "id": str(i)}


class EpochShardSampler(Sampler[int]):
    """Permutation from (seed, epoch), sharded rank::world_size (DistributedSampler style)."""

    def __init__(self, n: int, seed: int, rank: int, world_size: int) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100 + self.epoch))
        return iter(perm[self.rank :: self.world].tolist())

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    b = len(items)
    boxes = torch.zeros(b, 2, 4)
    classes = torch.zeros(b, 2, dtype=torch.int64)
    weights = torch.zeros(b, 2)
    for j, it in enumerate(items):
        boxes[j, 0], classes[j, 0], weights[j, 0] = it["box"], it["label"], 1.0
    return {
        "images": torch.stack([it["image"] for it in items]),
        "true_image_shapes": torch.tensor([[IMAGE, IMAGE, 3]] * b, dtype=torch.int64),
        "groundtruth": {"boxes": boxes, "classes": classes, "weights": weights,
                        "num_boxes": torch.ones(b, dtype=torch.int64)},
        "source_ids": [it["id"] for it in items],
        "filenames": [it["id"] for it in items],
    }


def loader_fn(input_reader: Any, model_config: Any, train_config: Any = None, *, is_training: bool, batch_size: int,
              seed: int = 0, rank: int = 0, world_size: int = 1, num_workers: int | None = None,
              n: int = 24) -> DataLoader:
    ds = FakeDataset(n)
    return DataLoader(ds, batch_size=batch_size, sampler=EpochShardSampler(n, seed, rank, world_size),
                      collate_fn=collate, num_workers=num_workers or 0, drop_last=True)


def test_fake_loader_is_deterministic_and_sharded() -> None:
    a = [b["source_ids"] for b in loader_fn(None, None, is_training=True, batch_size=4, seed=1)]
    b = [b["source_ids"] for b in loader_fn(None, None, is_training=True, batch_size=4, seed=1)]
    assert a == b and len(a) == 6
    r0 = [x["source_ids"] for x in loader_fn(None, None, is_training=True, batch_size=2, seed=1, world_size=2)]
    r1 = [x["source_ids"] for x in loader_fn(None, None, is_training=True, batch_size=2, seed=1, rank=1,
                                             world_size=2)]
    # the two ranks together see exactly the single-process global batches
    assert [sorted(x + y) for x, y in zip(r0, r1)] == [sorted(x) for x in a]


def test_fake_model_losses() -> None:
    batch = next(iter(loader_fn(None, None, is_training=True, batch_size=4)))
    m = FakeDetector()
    pred = m.predict(m.preprocess(batch["images"]))
    losses = m.loss(pred, batch["groundtruth"], batch["true_image_shapes"])
    assert set(losses) == {"Loss/localization_loss", "Loss/classification_loss"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert m.regularization_loss() > 0
