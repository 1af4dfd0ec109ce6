"""DDP: `torchrun --nproc_per_node 2` on CPU (gloo) gives the same loss curve and weights as one process
with the same global batch. Slow-ish: starts 2 worker processes (torch import dominates)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from test_train_fakes import loader_fn, model_fn, pipeline

from odkit import checkpoints as ck
from odkit.workflows.train import train

TESTS = Path(__file__).resolve().parent
STEPS = 6
OPT = ("momentum_optimizer { learning_rate { manual_step_learning_rate { initial_learning_rate: 0.05 "
       "schedule { step: 3 learning_rate: 0.02 } } } momentum_optimizer_value: 0.9 }")

SCRIPT = textwrap.dedent(
    f"""
    import sys
    sys.path.insert(0, {str(TESTS)!r})
    import torch
    torch.set_num_threads(1)
    from test_train_fakes import loader_fn, model_fn, pipeline
    from odkit.workflows.train import train

    train(model_dir=sys.argv[1], config=pipeline(batch_size=4, num_steps={STEPS}, optimizer={OPT!r}),
          model_fn=model_fn(use_bn=False), loader_fn=loader_fn, allow_unsupported=True, device="cpu",
          log_every_n=1, checkpoint_every_n={STEPS}, seed=2)
    """
)


@pytest.mark.slow
def test_two_cpu_processes_match_one(tmp_path: Path) -> None:
    script = tmp_path / "ddp_train.py"
    script.write_text(SCRIPT)
    ddp_dir = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
         str(ddp_dir)],
        capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2 processes, batch 4" in proc.stdout

    single_dir = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(model_dir=single_dir, config=pipeline(batch_size=4, num_steps=STEPS, optimizer=OPT),
              model_fn=model_fn(use_bn=False), loader_fn=loader_fn, allow_unsupported=True, device="cpu",
              log_every_n=1, checkpoint_every_n=STEPS, seed=2, verbose=False)
    finally:
        torch.set_num_threads(threads)

    h_ddp = ck.load_train_state(ddp_dir / f"ckpt-{STEPS}")["loss_history"]
    h_one = ck.load_train_state(single_dir / f"ckpt-{STEPS}")["loss_history"]
    assert h_ddp.shape == h_one.shape == (STEPS, 6)
    assert torch.allclose(h_ddp, h_one, rtol=1e-4, atol=1e-6), (h_ddp, h_one)
    assert h_one[0, 1] != h_one[-1, 1]  # the loss moved
    a, b = ck.read_state_dict(ddp_dir), ck.read_state_dict(single_dir)
    for k in a:
        assert torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-6), k
