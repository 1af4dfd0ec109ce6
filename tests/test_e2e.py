"""End to end: the public commands, on built-in data and on real data, to a real accuracy bar.

These are the suite's slow tests (about a minute each on 2 cores). They train the demo model
(SSD MobileNet v2 FPN-lite, half width, 128x128) from scratch for a small fixed budget; the bars are set
well under what the same budget reached when the test was written, and far above chance (a detector that
knows nothing scores mAP@0.5 ~ 0 here: boxes must overlap heads with IoU >= 0.5 *and* carry the class).
Measured when written (mAP@0.5): built-in data, 400 steps 0.349; pets subset, 300 steps 0.096; raccoon,
300 steps 0.706. The full demo (1,200 steps, 120 images per class) depends on the seed: 0.784 for seed 1
(README). Re-measured with 1 thread + 1 loader worker (odkit.runtime on 2 cores): built-in data, 400 steps 0.397.
With the He-initialised demo config: built-in data, 800 steps, 40 images per class, mAP@0.5 0.951.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from odkit import config as cfg
from odkit.cli import main as odkit
from odkit.demo import COCO_KEYS, CONFIG_DIR, run_demo

pytestmark = pytest.mark.slow

DEMO_CONFIG = CONFIG_DIR / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"
MAP50 = "DetectionBoxes_Precision/mAP@.50IOU"


def _train_and_eval(tmp: Path, train_glob: str, val_glob: str, label_map: Path, num_classes: int,
                    steps: int) -> dict[str, float]:
    overrides = [
        f"train_input_reader.tf_record_input_reader.input_path={train_glob}",
        f"train_input_reader.label_map_path={label_map}",
        f"eval_input_reader.0.tf_record_input_reader.input_path={val_glob}",
        f"eval_input_reader.0.label_map_path={label_map}",
        f"model.ssd.num_classes={num_classes}",
        f"train_config.num_steps={steps}",
        f"train_config.optimizer.adam_optimizer.learning_rate.cosine_decay_learning_rate.total_steps={steps}",
    ]
    pipeline = tmp / "pipeline.config"
    cfg.save(cfg.load(str(DEMO_CONFIG), overrides=overrides), str(pipeline))
    model_dir = tmp / "model"
    assert odkit(["train", "--pipeline_config_path", str(pipeline), "--model_dir", str(model_dir),
                  "--log_every_n", "50"]) == 0
    assert odkit(["eval", "--pipeline_config_path", str(pipeline), "--model_dir", str(model_dir),
                  "--run_once"]) == 0
    return json.loads((model_dir / "eval" / "metrics.json").read_text())


def test_demo_on_builtin_data(tmp_path: Path) -> None:
    """`odkit demo` with fewer images and steps: every stage runs and the model really detects."""
    summary = run_demo(workdir=tmp_path / "w", config=str(DEMO_CONFIG), steps=800, images_per_class=40)
    w = tmp_path / "w"
    on_disk = json.loads((w / "summary.json").read_text())
    assert on_disk["steps"] == 800 and on_disk["config"] == DEMO_CONFIG.name
    for key in ("dataset", "config", "steps", "seconds", "metrics", "export_dir"):
        assert key in on_disk
    assert set(COCO_KEYS) <= set(on_disk["metrics"])
    # measured 0.951 with the He-initialised demo recipe (seed 0; the random_normal(0.01) recipe gave 0.61, and
    # 0.18 at 400 steps); one seed measured, so the bar keeps the old recipe's wide margin
    assert summary["metrics"][MAP50] >= 0.3, summary["metrics"]
    export = Path(on_disk["export_dir"])
    for name in ("model.onnx", "model.torchscript.pt", "pipeline.config", "label_map.pbtxt", "export_info.json"):
        assert (export / name).is_file(), name
    dets = json.loads((Path(on_disk["predictions_dir"]) / "detections.json").read_text())
    assert len(dets) >= 4
    assert any(d["detections"] for d in dets), "the exported model found nothing on held-out images"


def test_real_pets_subset_three_breeds(tmp_path: Path, shared_dir: Path) -> None:
    """Real Oxford-IIIT Pet images (3 breeds, head boxes), from scratch, small budget."""
    data = shared_dir / "datasets" / "oxford_pets_subset"
    if not (data / "annotations" / "trainval.txt").is_file():
        pytest.skip(f"{data} not found")
    from odkit.demo import breeds_in, write_label_map

    names = breeds_in(data)
    assert len(names) == 3
    label_map = tmp_path / "label_map.pbtxt"
    write_label_map(names, label_map)
    rec = tmp_path / "records"
    assert odkit(["create-pet-tfrecord", "--data_dir", str(data), "--output_dir", str(rec),
                  "--label_map_path", str(label_map), "--num_shards", "2"]) == 0
    metrics = _train_and_eval(tmp_path, f"{rec}/pet_faces_train.record-?????-of-00002",
                              f"{rec}/pet_faces_val.record-?????-of-00002", label_map, 3, steps=300)
    print("pets subset:", {k: round(metrics[k], 4) for k in COCO_KEYS})
    assert metrics[MAP50] >= 0.05, metrics


def test_real_raccoon_voc(tmp_path: Path, shared_dir: Path) -> None:
    """The raccoon VOC dataset (1 class) through create-tfrecord --format voc, from scratch, small budget."""
    data = shared_dir / "datasets" / "raccoon"
    if not data.is_dir():
        pytest.skip(f"{data} not found")
    prefix = tmp_path / "records" / "raccoon.record"
    label_map = tmp_path / "records" / "label_map.pbtxt"
    assert odkit(["create-tfrecord", "--format", "voc", "--data_dir", str(data), "--output_path", str(prefix),
                  "--num_shards", "2", "--val_fraction", "0.2", "--label_map_output_path", str(label_map)]) == 0
    train = sorted((tmp_path / "records").glob("raccoon_train.record-*"))
    val = sorted((tmp_path / "records").glob("raccoon_val.record-*"))
    assert train and val and label_map.is_file()
    metrics = _train_and_eval(tmp_path, str(train[0]).replace("00000-of", "?????-of"),
                              str(val[0]).replace("00000-of", "?????-of"), label_map, 1, steps=300)
    print("raccoon:", {k: round(metrics[k], 4) for k in COCO_KEYS})
    assert metrics[MAP50] >= 0.35, metrics
