"""The zoo CenterNet Hourglass config (hourglass_10 backbone, 64 px) through the public CLI on TF-written pets
records: train (resume-able checkpoint, CenterNet losses), eval --run_once (COCO metrics), export (ONNX +
TorchScript, verified against eager) and predict with the exported model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from odkit import checkpoints as ck
from odkit.cli import main

pytestmark = pytest.mark.slow  # ~15 s CPU

CONFIG = "centernet_hourglass104_512x512_coco17_tpu-8.config"


def _overrides(compat_dir: Path) -> list[str]:
    rec = compat_dir / "tfrecords_tf" / "pet_faces_tf.record-?????-of-00002"
    label_map = compat_dir / "label_maps" / "pet_label_map.pbtxt"
    values = [
        "model.center_net.feature_extractor.type=hourglass_10",
        "model.center_net.num_classes=37",
        "model.center_net.image_resizer.keep_aspect_ratio_resizer.min_dimension=64",
        "model.center_net.image_resizer.keep_aspect_ratio_resizer.max_dimension=64",
        "train_config.batch_size=2",
        "train_config.fine_tune_checkpoint=",
        f"train_input_reader.tf_record_input_reader.input_path={rec}",
        f"train_input_reader.label_map_path={label_map}",
        f"eval_input_reader.0.tf_record_input_reader.input_path={rec}",
        f"eval_input_reader.0.label_map_path={label_map}",
    ]
    return [a for v in values for a in ("--override", v)]


def test_center_net_train_eval_export_predict(compat_dir: Path, shared_dir: Path, tmp_path: Path, capsys) -> None:
    config = str(compat_dir / "tfod_configs" / CONFIG)
    ov = _overrides(compat_dir)
    model_dir = tmp_path / "model"
    assert main(["train", "--pipeline_config_path", config, "--model_dir", str(model_dir), "--num_train_steps", "2",
                 "--checkpoint_every_n", "2", "--num_workers", "0", "--log_every_n", "1", "--device", "cpu",
                 *ov]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "training CenterNetMetaArch" in out and "step 2/2" in out and "object_center" in out
    assert [c.step for c in ck.list_checkpoints(model_dir)] == [2]
    meta = json.loads((model_dir / "ckpt-2" / "meta.json").read_text())
    assert set(meta["losses"]) >= {"Loss/object_center", "Loss/box/scale", "Loss/box/offset", "Loss/total_loss"}

    assert main(["eval", "--pipeline_config_path", config, "--model_dir", str(model_dir), "--checkpoint_dir",
                 str(model_dir), "--run_once", *ov]) == 0, capsys.readouterr().err
    assert "DetectionBoxes_Precision/mAP" in capsys.readouterr().out

    export = tmp_path / "export"
    assert main(["export", "--input_type", "image_tensor", "--pipeline_config_path", config,
                 "--trained_checkpoint_dir", str(model_dir), "--output_directory", str(export), *ov]) == 0
    info = json.loads((export / "export_info.json").read_text())
    assert info["num_classes"] == 37 and info["input_size"] == [64, 64]
    assert all(info["formats"][f]["verification"] for f in ("onnx", "torchscript"))
    capsys.readouterr()

    images = sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    preds = tmp_path / "pred"
    assert main(["predict", "--model", str(export), "--images", *map(str, images), "--output_dir", str(preds)]) == 0
    dets = json.loads((preds / "detections.json").read_text())
    assert len(dets) == 2
