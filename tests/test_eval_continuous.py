"""Continuous eval: a fake trainer writes checkpoints over (simulated) time; each is evaluated once."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from odkit.checkpoints import save_checkpoint
from odkit.errors import OdkitError
from odkit.workflows.continuous_eval import run_continuous_eval


class FakeTrainer:
    """Writes checkpoints when the simulated clock passes their time; drives the eval loop's sleep()."""

    def __init__(self, model_dir: Path, schedule: list[tuple[float, int]]) -> None:
        self.dir = model_dir
        self.schedule = sorted(schedule)
        self.t = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.t

    def sleep(self, dt: float) -> None:
        self.sleeps.append(dt)
        self.t += max(dt, 1e-3)
        while self.schedule and self.schedule[0][0] <= self.t:
            _, step = self.schedule.pop(0)
            if step < 0:  # a half-written checkpoint: the temp folder and a folder without complete meta
                half = self.dir / f"ckpt-{-step}"
                half.mkdir(parents=True)
                (half / "model.safetensors").write_bytes(b"partial")
                (half / "meta.json").write_text(json.dumps({"step": -step}))
                (self.dir / f".ckpt-{-step + 1}.tmp").mkdir()
            else:
                save_checkpoint(self.dir, step, {"w": torch.zeros(2)})


def _run(tmp_path: Path, schedule, **kw):
    trainer = FakeTrainer(tmp_path, schedule)
    seen: list[tuple[int, float]] = []

    def evaluate(path: Path, step: int) -> dict[str, float]:
        assert path.name == f"ckpt-{step}"
        seen.append((step, trainer.t))
        trainer.t += 3.0  # evaluation takes time; the trainer goes on meanwhile
        trainer.sleep(0)
        return {"DetectionBoxes_Precision/mAP": step / 100}

    logs: list[str] = []
    kw.setdefault("eval_timeout", 30.0)
    kw.setdefault("wait_interval", 5.0)
    result = run_continuous_eval(tmp_path, evaluate, log=logs.append, sleep=trainer.sleep, clock=trainer.clock,
                                 poll_interval=1.0, **kw)
    return result, seen, logs, trainer


def test_each_checkpoint_once_half_written_ignored_stops_at_timeout(tmp_path):
    schedule = [(4.0, 10), (6.0, -15), (7.0, 20), (8.0, 30), (40.0, 40)]
    result, seen, logs, trainer = _run(tmp_path, schedule)
    steps = [s for s, _ in seen]
    assert steps == [10, 20, 30, 40]
    assert [s for s, _ in result.evaluated] == steps
    assert result.evaluated[-1][1]["DetectionBoxes_Precision/mAP"] == pytest.approx(0.4)
    # 20 and 30 were both waiting after 10: evaluated back to back; the folder is checked every 5 s
    assert seen[2][1] - seen[1][1] == pytest.approx(3.0, abs=0.01)
    assert max(trainer.sleeps) <= 5.0
    assert "--eval_timeout" in result.reason
    # stopped ~30 s after the last evaluation finished, not earlier
    assert trainer.t >= seen[-1][1] + 3.0 + 30.0
    assert any("waiting for a first complete checkpoint" in m for m in logs)
    assert any("checking every 5 s, giving up in 30 s" in m for m in logs)
    assert "steps [10, 20, 30, 40]" in logs[-1]


def test_no_checkpoint_times_out_cleanly(tmp_path):
    result, seen, logs, _ = _run(tmp_path, [], eval_timeout=10.0)
    assert seen == [] and result.evaluated == []
    assert "no new checkpoint for 10 s" in result.reason


def test_stops_after_final_step_and_max_evals(tmp_path):
    result, seen, _, _ = _run(tmp_path / "a", [(1.0, 10), (2.0, 20), (3.0, 30)], final_step=20)
    assert [s for s, _ in seen] == [10, 20]
    assert "num_steps 20" in result.reason
    result, seen, _, _ = _run(tmp_path / "b", [(1.0, 10), (2.0, 20), (3.0, 30)], max_evals=1)
    assert [s for s, _ in seen] == [10]


def test_run_once_takes_latest_and_refuses_empty_dir(tmp_path):
    save_checkpoint(tmp_path, 5, {"w": torch.zeros(1)})
    save_checkpoint(tmp_path, 9, {"w": torch.zeros(1)})
    result, seen, _, _ = _run(tmp_path, [], run_once=True)
    assert [s for s, _ in seen] == [9]
    with pytest.raises(OdkitError, match="no complete checkpoint"):
        _run(tmp_path / "empty", [], run_once=True)


def test_real_time_writer_thread(tmp_path):
    """The same with a real clock: a writer thread saves checkpoints while the loop polls every 50 ms."""
    import threading

    def writer() -> None:
        for step in (1, 2, 3):
            time.sleep(0.1)
            if step == 2:
                (tmp_path / ".ckpt-2.tmp").mkdir()  # interrupted save: never completed
                continue
            save_checkpoint(tmp_path, step, {"w": torch.zeros(1)})

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[int] = []
    result = run_continuous_eval(tmp_path, lambda path, step: seen.append(step) or {}, eval_timeout=3.0,
                                 wait_interval=0.05, log=lambda m: None)
    thread.join()
    assert seen == [1, 3]
    assert "--eval_timeout" in result.reason
