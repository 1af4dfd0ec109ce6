"""Crash safety: SIGKILL a CPU training run at a random step, run the same command again, and get
bit-identical weights at the final step to an uninterrupted run (deterministic CPU mode).

Slowest training test: one subprocess (torch + tensorboard imports dominate), then the resume and the
uninterrupted run in-process with the same thread count.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from odkit import checkpoints as ck

TESTS = Path(__file__).resolve().parent
NUM_STEPS = 12

SCRIPT = textwrap.dedent(
    f"""
    import sys, time
    sys.path.insert(0, {str(TESTS)!r})
    import torch
    torch.set_num_threads(1)
    from test_train_fakes import loader_fn, model_fn, pipeline
    from odkit.workflows.train import train

    class SlowLoader:
        # the fake DataLoader, optionally sleeping per batch so the kill lands mid-run
        def __init__(self, delay, *args, **kwargs):
            self.delay = delay
            self.inner = loader_fn(*args, **kwargs)
            self.sampler = self.inner.sampler  # set_epoch
        def __iter__(self):
            for batch in self.inner:
                time.sleep(self.delay)
                yield batch
        def __len__(self):
            return len(self.inner)

    OPT = ("adam_optimizer {{ learning_rate {{ cosine_decay_learning_rate {{ learning_rate_base: 0.02 "
           "total_steps: {NUM_STEPS} warmup_learning_rate: 0.002 warmup_steps: 3 }} }} }}")
    KW = dict(model_fn=model_fn(), allow_unsupported=True, device="cpu", log_every_n=1, checkpoint_every_n=2,
              deterministic=True, seed=5)

    def run(model_dir, delay, verbose=True):
        return train(model_dir=model_dir, config=pipeline(num_steps={NUM_STEPS}, optimizer=OPT, ema=True),
                     loader_fn=lambda *a, **k: SlowLoader(delay, *a, **k),
                     verbose=verbose, **KW)

    if __name__ == "__main__":
        run(sys.argv[1], float(sys.argv[2]))
    """
)


@pytest.mark.slow
def test_sigkill_then_resume_matches_uninterrupted(tmp_path: Path) -> None:
    script = tmp_path / "run_train.py"
    script.write_text(SCRIPT)
    kill_after = int(os.environ.get("ODKIT_KILL_STEP", "0")) or random.randint(1, NUM_STEPS - 2)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen([sys.executable, str(script), str(crashed), "0.05"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    seen = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(line)
        if line.startswith(f"step {kill_after}/"):
            os.kill(proc.pid, signal.SIGKILL)
            break
        assert time.monotonic() < deadline, "".join(seen)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    before = [c.step for c in ck.list_checkpoints(crashed)]
    assert all(s <= kill_after + 1 for s in before), (kill_after, before)

    sys.path.insert(0, str(tmp_path))
    threads = torch.get_num_threads()
    try:
        import run_train  # the same code path as the killed process, with its thread count

        resumed = run_train.run(crashed, 0.0, verbose=False)
        clean = tmp_path / "clean"
        run_train.run(clean, 0.0, verbose=False)
    finally:
        torch.set_num_threads(threads)
        sys.path.remove(str(tmp_path))
        sys.modules.pop("run_train", None)
    assert resumed.resumed_from == (before[-1] if before else None)
    assert resumed.step == NUM_STEPS

    for ema in (False, True):
        a = ck.read_state_dict(clean / f"ckpt-{NUM_STEPS}", use_ema=ema)
        b = ck.read_state_dict(crashed / f"ckpt-{NUM_STEPS}", use_ema=ema)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{k} differs after a kill at step {kill_after} (ema={ema})"
    assert not list(crashed.glob(".ckpt-*"))
