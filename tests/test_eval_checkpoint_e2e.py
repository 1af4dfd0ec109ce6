"""evaluate_checkpoint / `odkit eval --run_once` with the real pieces: records, input loader, model, checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from odkit.cli import main

pytestmark = pytest.mark.slow

CONFIG = Path(__file__).resolve().parents[1] / "src/odkit/configs/ssd_mobilenet_v2_fpnlite_128x128_demo.config"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    from odkit import config as cfg
    from odkit.builders.model_builder import build_model
    from odkit.checkpoints import save_checkpoint
    from odkit.data.synthetic import SyntheticSpec, generate_pets_like
    from odkit.demo import breeds_in, write_label_map

    w = tmp_path_factory.mktemp("evale2e")
    generate_pets_like(w / "data", SyntheticSpec(images_per_class=3, test_per_class=1, min_size=64, max_size=96))
    write_label_map(breeds_in(w / "data"), w / "label_map.pbtxt")
    assert main(["create-pet-tfrecord", "--data_dir", str(w / "data"), "--output_dir", str(w / "records"),
                 "--label_map_path", str(w / "label_map.pbtxt"), "--num_shards", "1"]) == 0
    pipeline = cfg.load(str(CONFIG), overrides=[
        f"eval_input_reader.0.tf_record_input_reader.input_path={w}/records/pet_faces_val.record-?????-of-00001",
        f"eval_input_reader.0.label_map_path={w}/label_map.pbtxt",
        f"train_input_reader.tf_record_input_reader.input_path={w}/records/pet_faces_train.record-?????-of-00001",
        f"train_input_reader.label_map_path={w}/label_map.pbtxt",
        "model.ssd.image_resizer.fixed_shape_resizer.height=64",
        "model.ssd.image_resizer.fixed_shape_resizer.width=64",
        "eval_config.num_visualizations=2",
        "eval_config.include_metrics_per_category=true",
        "eval_config.metrics_set=coco_detection_metrics",
    ])
    cfg.save(pipeline, str(w / "pipeline.config"))
    model = build_model(pipeline.model, is_training=False)
    save_checkpoint(w / "model", 3, model.state_dict())
    return w, pipeline


def test_evaluate_checkpoint_writes_eval_dir(workdir):
    from odkit.workflows.evaluate import evaluate_checkpoint

    w, pipeline = workdir
    metrics = evaluate_checkpoint(pipeline, w / "model" / "ckpt-3", w / "model", device="cpu")
    assert 0.0 <= metrics["DetectionBoxes_Precision/mAP"] <= 1.0
    assert any(k.startswith("DetectionBoxes_PerformanceByCategory/mAP/") for k in metrics)
    assert metrics["Loss/total_loss"] > 0
    saved = json.loads((w / "model" / "eval" / "metrics-ckpt-3.json").read_text())
    assert saved["DetectionBoxes_Recall/AR@100"] == pytest.approx(metrics["DetectionBoxes_Recall/AR@100"])
    assert (w / "model" / "eval" / "pr_curves.png").is_file()
    assert sorted(p.name for p in (w / "model" / "eval").glob("side_by_side_*.png")) == [
        "side_by_side_0.png", "side_by_side_1.png"]


def test_odkit_eval_run_once_cli(workdir, capsys):
    w, _ = workdir
    rc = main(["eval", "--pipeline_config_path", str(w / "pipeline.config"), "--model_dir", str(w / "model"),
               "--run_once", "--device", "cpu", "--allow_unsupported"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "DetectionBoxes_Precision/mAP@.50IOU" in out
    assert json.loads((w / "model" / "eval" / "metrics.json").read_text())


def test_use_ema_reads_ema_weights_or_says_they_are_missing(workdir):
    from odkit.builders.model_builder import build_model
    from odkit.checkpoints import save_checkpoint
    from odkit.errors import OdkitError
    from odkit.workflows.evaluate import evaluate_checkpoint

    w, pipeline = workdir
    with pytest.raises(OdkitError, match="ema"):
        evaluate_checkpoint(pipeline, w / "model" / "ckpt-3", w / "model", device="cpu", use_ema=True)
    model = build_model(pipeline.model, is_training=False)
    ckpt = save_checkpoint(w / "ema_model", 4, model.state_dict(), ema_state=model.state_dict())
    metrics = evaluate_checkpoint(pipeline, ckpt.path, w / "ema_model", device="cpu", use_ema=True,
                                  max_examples=1)
    assert "DetectionBoxes_Precision/mAP" in metrics
    assert (w / "ema_model" / "eval" / "metrics-ckpt-4.json").is_file()
