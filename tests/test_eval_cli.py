"""`odkit eval` flags and loop wiring (the per-checkpoint evaluation is faked here)."""

from __future__ import annotations

import pytest
import torch

from odkit.checkpoints import save_checkpoint
from odkit.cli import main

CONFIG = """
train_config { num_steps: 20 }
eval_config { metrics_set: "coco_detection_metrics" eval_interval_secs: 0 }
eval_input_reader { label_map_path: "x.pbtxt" tf_record_input_reader { input_path: "x.record" } }
"""


@pytest.fixture()
def setup(tmp_path, monkeypatch):
    cfg = tmp_path / "pipeline.config"
    cfg.write_text(CONFIG)
    calls = []

    def fake_evaluate_checkpoint(config, ckpt_path, model_dir, *, device=None, use_ema=None):
        calls.append((int(str(ckpt_path).rsplit("-", 1)[1]), str(model_dir), device, use_ema,
                      config.eval_input_reader[0].sample_1_of_n_examples))
        return {"DetectionBoxes_Precision/mAP": 0.5}

    import odkit.workflows.evaluate as evaluator

    monkeypatch.setattr(evaluator, "evaluate_checkpoint", fake_evaluate_checkpoint)
    return tmp_path, cfg, calls


def test_run_once_evaluates_latest(setup, capsys):
    tmp_path, cfg, calls = setup
    for step in (5, 10):
        save_checkpoint(tmp_path / "m", step, {"w": torch.zeros(1)})
    rc = main(["eval", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "m"), "--run_once",
               "--allow_unsupported", "--device", "cpu", "--use_ema", "no", "--sample_1_of_n_eval_examples", "3"])
    assert rc == 0
    assert calls == [(10, str(tmp_path / "m"), "cpu", False, 3)]
    out = capsys.readouterr().out
    assert "DetectionBoxes_Precision/mAP" in out and "0.5000" in out


def test_continuous_stops_after_final_step(setup, capsys):
    tmp_path, cfg, calls = setup
    for step in (10, 20):
        save_checkpoint(tmp_path / "ck", step, {"w": torch.zeros(1)})
    rc = main(["eval", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "m"),
               "--checkpoint_dir", str(tmp_path / "ck"), "--eval_timeout", "5", "--allow_unsupported"])
    assert rc == 0
    assert [c[0] for c in calls] == [10, 20]
    assert calls[0][1] == str(tmp_path / "m")  # outputs go to --model_dir
    assert "num_steps 20" in capsys.readouterr().out


def test_timeout_without_checkpoints_exits_zero(setup, capsys):
    tmp_path, cfg, calls = setup
    rc = main(["eval", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "none"),
               "--eval_timeout", "0", "--wait_interval", "0", "--allow_unsupported"])
    assert rc == 0 and calls == []
    out = capsys.readouterr().out
    assert "no checkpoint was evaluated" in out and "--eval_timeout" in out


def test_errors_are_one_line(setup, capsys):
    tmp_path, cfg, _ = setup
    rc = main(["eval", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path / "none"), "--run_once",
               "--allow_unsupported"])
    assert rc == 2
    assert "no complete checkpoint" in capsys.readouterr().err
    cfg.write_text(CONFIG.replace("coco_detection_metrics", "oid_V2_detection_metrics"))
    rc = main(["eval", "--pipeline_config_path", str(cfg), "--model_dir", str(tmp_path), "--run_once",
               "--allow_unsupported"])
    err = capsys.readouterr().err
    assert rc == 2 and "oid_V2_detection_metrics" in err and len(err.strip().splitlines()) <= 2
