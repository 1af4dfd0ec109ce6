"""`odkit train` end to end with the real pieces: config loader, input pipeline on TF-written records,
the SSD model builder. Small: the demo SSD MobileNet v2 FPN-lite at 64x64, batch 2, 1 step + 1 resumed step.

The pets SSD ResNet50 FPN reference config is trained too when ODKIT_TRAIN_PETS=1 (about a minute on a
quiet 2-core CPU at 128x128; skipped by default to keep the suite fast).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from odkit import checkpoints as ck
from odkit.cli import main

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"


def _overrides(compat_dir: Path, size: int, num_classes: int | None) -> list[str]:
    rec = compat_dir / "tfrecords_tf" / "pet_faces_tf.record-?????-of-00002"
    ov = [
        f"train_input_reader.tf_record_input_reader.input_path={rec}",
        f"train_input_reader.label_map_path={compat_dir / 'label_maps' / 'pet_label_map.pbtxt'}",
        "train_config.batch_size=2",
        f"model.ssd.image_resizer.fixed_shape_resizer.height={size}",
        f"model.ssd.image_resizer.fixed_shape_resizer.width={size}",
    ]
    if num_classes:
        ov.append(f"model.ssd.num_classes={num_classes}")
    out = []
    for o in ov:
        out += ["--override", o]
    return out


def _assert_supported(config_path: Path, argv: list[str]) -> None:
    """Every set field (with the overrides) is honoured, so `odkit train` runs without --allow_unsupported."""
    import odkit.config as cfg
    from odkit.workflows.config_check import check

    overrides = [argv[i + 1] for i, a in enumerate(argv) if a == "--override"]
    problems = [str(p) for p in check(cfg.load(config_path, overrides=overrides)).unsupported]
    assert not problems, problems
    assert "--allow_unsupported" not in argv


@pytest.mark.slow
def test_demo_config_trains_and_resumes_on_tf_records(compat_dir: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    model_dir = tmp_path / "model"
    argv = ["train", "--pipeline_config_path", str(DEMO), "--model_dir", str(model_dir), "--num_train_steps", "1",
            "--checkpoint_every_n", "1", "--num_workers", "0", "--log_every_n", "1", "--device", "cpu",
            *_overrides(compat_dir, 64, 37)]
    _assert_supported(DEMO, argv)
    assert main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "step 1/1" in out and "img/s" in out
    assert [c.step for c in ck.list_checkpoints(model_dir)] == [1]
    meta = json.loads((model_dir / "ckpt-1" / "meta.json").read_text())
    assert set(meta["losses"]) >= {"Loss/localization_loss", "Loss/classification_loss", "Loss/total_loss"}
    assert "num_classes: 37" in (model_dir / "pipeline.config").read_text()
    state = ck.load_train_state(model_dir / "ckpt-1")
    assert state["data"]["loader"]["position"] == 2  # 1 step x batch 2 from the InputLoader's stream
    assert (model_dir / "train" / "loss.png").is_file()

    argv[argv.index("--num_train_steps") + 1] = "2"
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"resuming from {model_dir / 'ckpt-1'}" in out and "step 2/2" in out
    assert ck.load_train_state(model_dir / "ckpt-2")["data"]["loader"]["position"] == 4


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ODKIT_TRAIN_PETS") != "1", reason="set ODKIT_TRAIN_PETS=1 (ResNet50, ~1 min)")
def test_reference_pets_config_trains(compat_dir: Path, tmp_path: Path) -> None:
    config = compat_dir / "tfod_configs" / "pets_ssd_resnet50_v1_fpn_640x640.config"
    argv = ["train", "--pipeline_config_path", str(config), "--model_dir", str(tmp_path / "m"),
            "--num_train_steps", "1", "--num_workers", "0", "--device", "cpu",
            "--override", "train_config.fine_tune_checkpoint=", *_overrides(compat_dir, 128, None)]
    _assert_supported(config, argv)
    assert main(argv) == 0
    assert ck.latest_checkpoint(tmp_path / "m").step == 1  # type: ignore[union-attr]
