"""Input pipeline: records -> dataset -> sampler -> collate -> DataLoader (build_input_loader)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from PIL import Image

from odkit.data.example import encode_detection_example
from odkit.data.tfrecord import ShardedWriter
from odkit.errors import DataError
from odkit.inputs.builder import build_input_loader
from odkit.inputs.collate import collate_examples
from odkit.inputs.dataset import StreamSampler
from odkit.protos import pipeline_pb2

COLOURS = {1: (255, 0, 0), 2: (0, 255, 0), 3: (0, 0, 255)}
NUM_RECORDS = 10


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> str:
    """10 PNG records in 2 shards; record i has size (40 + 4i) x (60 - 2i) and 1-2 painted boxes."""
    d = tmp_path_factory.mktemp("records")
    rng = np.random.default_rng(0)
    with ShardedWriter(str(d / "train.record"), 2) as w:
        for i in range(NUM_RECORDS):
            h, wd = 40 + 4 * i, 60 - 2 * i
            img = np.zeros((h, wd, 3), np.uint8)
            boxes, labels, texts = [], [], []
            for k in range(1 + i % 2):
                label = 1 + (i + k) % 3
                y0, x0 = int(rng.integers(0, h // 2 - 12)), int(rng.integers(0, wd // 2 - 12)) + k * (wd // 2)
                bh, bw = int(rng.integers(12, h // 2)), int(rng.integers(10, wd // 2 - 1))
                img[y0:y0 + bh, x0:x0 + bw] = COLOURS[label]
                boxes.append([y0 / h, x0 / wd, (y0 + bh) / h, (x0 + bw) / wd])
                labels.append(label)
                texts.append(f"c{label}")
            w.write(encode_detection_example(_png(img), format="png", height=h, width=wd, filename=f"img{i}.png",
                                             source_id=str(i), boxes=np.array(boxes, np.float32), labels=labels,
                                             texts=texts))
    return str(d / "train.record-?????-of-00002")


def _config(records: str, resizer: str = "keep_aspect_ratio_resizer { min_dimension: 48 max_dimension: 64 "
            "pad_to_max_dimension: true }", augment: str = "", extra: str = "") -> pipeline_pb2.TrainEvalPipelineConfig:
    text = f"""
    model {{ ssd {{ num_classes: 3 image_resizer {{ {resizer} }} }} }}
    train_config {{ batch_size: 4 max_number_of_boxes: 5 {augment} }}
    train_input_reader {{ tf_record_input_reader {{ input_path: "{records}" }} {extra} }}
    eval_input_reader {{ shuffle: false num_epochs: 1 max_number_of_boxes: 3
                         tf_record_input_reader {{ input_path: "{records}" }} }}
    """
    return text_format.Parse(text, pipeline_pb2.TrainEvalPipelineConfig())


def _check_box_colours(batch: dict) -> int:
    """Centre pixels of every real box have the colour of its class. Returns boxes checked."""
    images, gt = batch["images"], batch["groundtruth"]
    _, _, h, w = images.shape
    checked = 0
    for i in range(images.shape[0]):
        for j in range(int(gt["num_boxes"][i])):
            y0, x0, y1, x1 = (gt["boxes"][i, j] * torch.tensor([h, w, h, w])).tolist()
            if y1 - y0 < 4 or x1 - x0 < 4:
                continue
            got = images[i, :, int((y0 + y1) / 2), int((x0 + x1) / 2)].to(torch.int64)
            want = torch.tensor(COLOURS[int(gt["classes"][i, j])])
            assert torch.all((got - want).abs() <= 40), (i, j, got.tolist(), want.tolist())
            checked += 1
    return checked


def test_eval_loader_contract(records: str) -> None:
    cfg = _config(records)
    loader = build_input_loader(cfg.eval_input_reader, cfg.model, is_training=False, batch_size=4, num_workers=0,
                                retain_original_images=True)
    batches = list(loader)
    assert [b["images"].shape[0] for b in batches] == [4, 4, 2]  # eval keeps the last partial batch
    b = batches[0]
    assert b["images"].dtype == torch.uint8 and b["images"].shape[1:] == (3, 64, 64)
    assert b["true_image_shapes"].dtype == torch.int64
    # record 0 is 40 x 60 -> min side 48 gives 48 x 72 > 64, so max side 64: round(40 * 64/60) = 43
    assert b["true_image_shapes"][0].tolist() == [43, 64, 3]
    assert b["original_sizes"][0].tolist() == [40, 60]
    gt = b["groundtruth"]
    assert gt["boxes"].shape == (4, 3, 4) and gt["classes"].dtype == torch.int64
    assert gt["num_boxes"].tolist() == [1, 1, 1, 1]  # even records have 1 box
    assert batches[1]["groundtruth"]["num_boxes"].tolist() == [1, 2, 2, 2]
    assert batches[1]["source_ids"] == ["8", "1", "3", "5"]
    assert torch.all(gt["classes"][0, 1:] == 0) and torch.all(gt["weights"][0, 1:] == 0)
    assert float(gt["weights"][0, 0]) == 1.0
    assert b["source_ids"] == ["0", "2", "4", "6"]  # shard 0 holds even records, file order without shuffle
    assert b["original_images"][0].shape == (3, 40, 60)
    # boxes are realigned to the padded 64 x 64 frame: all inside the valid region
    assert float(gt["boxes"][0, 0, 2]) <= 43 / 64 + 1e-6
    assert sum(_check_box_colours(x) for x in batches) >= 10
    again = list(loader)  # a finite stream read to the end starts over
    assert [x["source_ids"] for x in again] == [x["source_ids"] for x in batches]


def test_training_loader_with_augmentation_keeps_boxes_on_objects(records: str) -> None:
    augment = """
      data_augmentation_options { random_horizontal_flip {} }
      data_augmentation_options { ssd_random_crop {} }
      data_augmentation_options { random_adjust_brightness { max_delta: 0.05 } }
      data_augmentation_options { random_pad_image {} }
    """
    cfg = _config(records, augment=augment)
    loader = build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                batch_size=4, seed=1, num_workers=0)
    checked = 0
    for step, batch in enumerate(loader):
        assert batch["images"].shape == (4, 3, 64, 64)
        assert batch["groundtruth"]["boxes"].shape == (4, 5, 4)  # train_config.max_number_of_boxes
        boxes = batch["groundtruth"]["boxes"]
        assert torch.all(boxes >= 0) and torch.all(boxes <= 1)
        checked += _check_box_colours(batch)
        if step == 7:
            break
    assert checked >= 8


def test_fixed_shape_resizer_batch(records: str) -> None:
    cfg = _config(records, resizer="fixed_shape_resizer { height: 32 width: 48 }")
    loader = build_input_loader(cfg.eval_input_reader, cfg.model, is_training=False, batch_size=5, num_workers=0)
    batch = next(iter(loader))
    assert batch["images"].shape == (5, 3, 32, 48)
    assert batch["true_image_shapes"].tolist() == [[32, 48, 3]] * 5
    assert _check_box_colours(batch) >= 5


def test_sampler_ranks_are_disjoint_and_deterministic() -> None:
    parts = []
    for rank in range(3):
        s = StreamSampler(10, shuffle=True, seed=7, num_epochs=1, rank=rank, world_size=3, even=False)
        parts.append([i for i, _ in s])
    assert sorted(sum(parts, [])) == list(range(10))
    assert all(not set(a) & set(b) for a in parts for b in parts if a is not b)
    again = [i for i, _ in StreamSampler(10, shuffle=True, seed=7, num_epochs=1, rank=0, world_size=3, even=False)]
    assert again == parts[0]
    two = [i for i, _ in StreamSampler(10, shuffle=True, seed=7, num_epochs=2)]
    assert sorted(two[:10]) == list(range(10)) and sorted(two[10:]) == list(range(10))
    assert two[:10] != two[10:]  # a new permutation each epoch
    even = [len(list(StreamSampler(10, shuffle=True, seed=0, num_epochs=1, rank=r, world_size=4))) for r in range(4)]
    assert even == [3, 3, 3, 3]
    plain = [i for i, _ in StreamSampler(5, shuffle=False, num_epochs=1)]
    assert plain == [0, 1, 2, 3, 4]


def test_sampler_state_resumes_mid_epoch() -> None:
    full = list(StreamSampler(7, shuffle=True, seed=3, num_epochs=3))
    s = StreamSampler(7, shuffle=True, seed=3, num_epochs=3)
    s.load_state_dict({"position": 9, "num_records": 7})
    assert list(s) == full[9:]
    assert s.state_dict()["epoch"] == 1 and s.state_dict()["index"] == 2
    with pytest.raises(DataError, match="records"):
        s.load_state_dict({"position": 1, "num_records": 8})


def test_loader_resume_gives_the_same_stream(records: str) -> None:
    augment = "data_augmentation_options { random_crop_image {} } data_augmentation_options { random_horizontal_flip {} }"
    cfg = _config(records, augment=augment)

    def make():
        return build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                  batch_size=3, seed=5, num_workers=0)

    ref = []
    for batch in make():
        ref.append(batch)
        if len(ref) == 5:
            break
    first = make()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    assert state["position"] == 9
    resumed = make()
    resumed.load_state_dict(state)
    got = []
    for batch in resumed:
        got.append(batch)
        if len(got) == 2:
            break
    for a, b in zip(ref[3:], got):
        assert a["source_ids"] == b["source_ids"]
        assert torch.equal(a["images"], b["images"])
        assert torch.equal(a["groundtruth"]["boxes"], b["groundtruth"]["boxes"])


def test_workers_give_the_same_batches(records: str) -> None:
    """Slowest test here (~2 s): starts 2 DataLoader worker processes."""
    cfg = _config(records, augment="data_augmentation_options { ssd_random_crop {} }")

    def take(workers: int):
        loader = build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                    batch_size=2, seed=2, num_workers=workers)
        out = []
        for batch in loader:
            out.append(batch)
            if len(out) == 3:
                break
        return out

    for a, b in zip(take(0), take(2)):
        assert a["source_ids"] == b["source_ids"] and torch.equal(a["images"], b["images"])


def test_sample_1_of_n_and_label_map_texts(records: str, tmp_path: Path) -> None:
    lm = tmp_path / "label_map.pbtxt"
    # c1 -> id 2 and c2 -> id 1 (swapped); c3 is missing, so its boxes are dropped (TF: unknown text -> -1)
    lm.write_text('item { id: 2 name: "c1" } item { id: 1 name: "c2" } item { id: 3 name: "other" }')
    cfg = _config(records, extra=f'label_map_path: "{lm}" sample_1_of_n_examples: 2 shuffle: false num_epochs: 1')
    loader = build_input_loader(cfg.train_input_reader, cfg.model, None, is_training=False, batch_size=10,
                                num_workers=0)
    batch = next(iter(loader))
    assert len(batch["source_ids"]) == 5
    classes = batch["groundtruth"]["classes"]
    assert set(classes[classes > 0].tolist()) <= {1, 2}


def test_class_id_above_num_classes_is_a_data_error(records: str) -> None:
    cfg = _config(records)
    cfg.model.ssd.num_classes = 2
    loader = build_input_loader(cfg.eval_input_reader, cfg.model, is_training=False, batch_size=10, num_workers=0)
    with pytest.raises(DataError, match="num_classes 2"):
        next(iter(loader))


def test_missing_input_path_is_a_data_error(tmp_path: Path) -> None:
    cfg = _config(str(tmp_path / "nothing-?????-of-00002"))
    with pytest.raises(DataError, match="no files match"):
        build_input_loader(cfg.eval_input_reader, cfg.model, is_training=False, batch_size=1, num_workers=0)


def test_collate_pads_mixed_sizes_and_realigns_boxes() -> None:
    def ex(h: int, w: int, box: list[float]) -> dict:
        return {"image": torch.full((3, h, w), 9, dtype=torch.uint8), "true_image_shape": torch.tensor([h, w, 3]),
                "boxes": torch.tensor([box]), "classes": torch.tensor([1]), "weights": torch.tensor([1.0]),
                "original_size": torch.tensor([h, w]), "source_id": "x", "filename": ""}

    batch = collate_examples([ex(10, 20, [0.0, 0.0, 1.0, 1.0]), ex(20, 10, [0.5, 0.5, 1.0, 1.0])], max_boxes=None)
    assert batch["images"].shape == (2, 3, 20, 20)
    assert int(batch["images"][0, 0, 15, 5]) == 0 and int(batch["images"][0, 0, 5, 5]) == 9
    assert batch["groundtruth"]["boxes"][0, 0].tolist() == [0.0, 0.0, 0.5, 1.0]
    assert batch["groundtruth"]["boxes"][1, 0].tolist() == [0.5, 0.25, 1.0, 0.5]
    assert batch["groundtruth"]["num_boxes"].tolist() == [1, 1]


def test_collate_batches_channels_last_with_the_same_values() -> None:
    g = torch.Generator().manual_seed(0)
    chw = [torch.randint(0, 256, (3, 6, 5), dtype=torch.uint8, generator=g) for _ in range(3)]
    exs = [{"image": im if i % 2 else im.permute(1, 2, 0).contiguous().permute(2, 0, 1),  # both layouts in
            "true_image_shape": torch.tensor([6, 5, 3]), "boxes": torch.zeros((0, 4)),
            "classes": torch.zeros((0,), dtype=torch.int64), "weights": torch.zeros((0,)),
            "original_size": torch.tensor([6, 5]), "source_id": str(i), "filename": ""} for i, im in enumerate(chw)]
    images = collate_examples(exs, max_boxes=2)["images"]
    assert torch.equal(images, torch.stack(chw))
    assert images.is_contiguous(memory_format=torch.channels_last)


def test_preview_writes_a_grid(records: str, tmp_path: Path) -> None:
    import argparse

    from odkit.workflows.preview import run

    cfg = _config(records, resizer="fixed_shape_resizer { height: 32 width: 32 }",
                  augment="data_augmentation_options { random_horizontal_flip {} }")
    cfg_path = tmp_path / "pipeline.config"
    cfg_path.write_text(text_format.MessageToString(cfg))
    out = tmp_path / "grid.png"
    args = argparse.Namespace(pipeline_config_path=str(cfg_path), override=[], num=5, out=str(out), seed=0,
                              split="train")
    assert run(args) == 0
    grid = Image.open(out)
    assert grid.size == (3 * 36 + 4, 2 * 36 + 4)  # 5 tiles of 32 px in a 3 x 2 grid with 4 px gaps
    assert not list(tmp_path.glob(".preview-*"))


def test_pets_reference_config_preview(compat_dir: Path, tmp_path: Path) -> None:
    import argparse

    from odkit.workflows.preview import run

    records = compat_dir / "tfrecords_tf" / "pet_faces_tf.record-?????-of-00002"
    out = tmp_path / "pets.png"
    args = argparse.Namespace(
        pipeline_config_path=str(compat_dir / "tfod_configs" / "pets_ssd_resnet50_v1_fpn_640x640.config"),
        override=[f"train_input_reader.tf_record_input_reader.input_path={records}",
                  f"train_input_reader.label_map_path={compat_dir / 'label_maps' / 'pet_label_map.pbtxt'}",
                  "model.ssd.image_resizer.fixed_shape_resizer.height=128",
                  "model.ssd.image_resizer.fixed_shape_resizer.width=128"],
        num=4, out=str(out), seed=0, split="train")
    assert run(args) == 0
    assert Image.open(out).size == (2 * 132 + 4, 2 * 132 + 4)


def test_bad_image_in_a_worker_is_a_one_line_data_error(tmp_path: Path) -> None:
    with ShardedWriter(str(tmp_path / "bad.record"), 1) as w:
        w.write(encode_detection_example(b"not an image at all", format="jpeg", height=4, width=4,
                                         filename="bad.jpg", boxes=np.zeros((0, 4), np.float32), labels=[]))
    cfg = _config(str(tmp_path / "bad.record-?????-of-00001"))
    loader = build_input_loader(cfg.eval_input_reader, cfg.model, is_training=False, batch_size=1, num_workers=1)
    with pytest.raises(DataError) as info:
        next(iter(loader))
    text = str(info.value)
    assert "bad.record-00000-of-00001:offset 0" in text and "\n" not in text and "Traceback" not in text


def test_use_display_name_maps_texts_by_display_name(records: str, tmp_path: Path) -> None:
    lm = tmp_path / "label_map.pbtxt"
    lm.write_text('item { id: 1 name: "x1" display_name: "c3" } item { id: 2 name: "x2" display_name: "c1" } '
                  'item { id: 3 name: "x3" display_name: "c2" }')
    cfg = _config(records, extra=f'label_map_path: "{lm}" use_display_name: true shuffle: false num_epochs: 1')
    loader = build_input_loader(cfg.train_input_reader, cfg.model, None, is_training=False, batch_size=10,
                                num_workers=0)
    batch = next(iter(loader))
    # record "0" has one box of text c1 (written label 1); by display name c1 is id 2
    i = batch["source_ids"].index("0")
    assert batch["groundtruth"]["classes"][i, 0].item() == 2
