"""Continuous evaluation (model_main_tf2.py --checkpoint_dir): evaluate each new complete checkpoint once.

Only complete checkpoints count (odkit.checkpoints.list_checkpoints reads meta.json "complete": true),
so a half-written ``.ckpt-N.tmp`` folder is never picked up. Stops when no new checkpoint appears for
``eval_timeout`` seconds, after the checkpoint at train_config.num_steps, or after ``max_evals``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odkit.checkpoints import list_checkpoints
from odkit.errors import OdkitError


@dataclass
class ContinuousEvalResult:
    evaluated: list[tuple[int, dict[str, float]]] = field(default_factory=list)  # (step, metrics)
    reason: str = ""


EvaluateFn = Callable[[Path, int], dict[str, float]]


def run_continuous_eval(
    checkpoint_dir: str | Path,
    evaluate: EvaluateFn,
    *,
    eval_timeout: float = 3600.0,
    wait_interval: float = 300.0,
    run_once: bool = False,
    final_step: int = 0,
    max_evals: int = 0,
    log: Callable[[str], None] = print,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    poll_interval: float = 1.0,
) -> ContinuousEvalResult:
    """Call ``evaluate(ckpt_path, step)`` for each new complete checkpoint in ``checkpoint_dir``, oldest first.

    Checkpoints already waiting are evaluated back to back; otherwise the folder is checked every
    ``wait_interval`` seconds (``poll_interval`` when that is 0) until ``eval_timeout`` seconds pass
    without a new one.
    """
    ckpt_dir = Path(checkpoint_dir)
    result = ContinuousEvalResult()
    if run_once:
        ckpts = list_checkpoints(ckpt_dir)
        if not ckpts:
            raise OdkitError("no complete checkpoint to evaluate", where=str(ckpt_dir),
                             hint="train first, or pass --checkpoint_dir with ckpt-N folders")
        ck = ckpts[-1]
        log(f"evaluating {ck.path} (step {ck.step}) once")
        result.evaluated.append((ck.step, evaluate(ck.path, ck.step)))
        result.reason = "run_once"
        return result

    last_step = -1
    wait_started = clock()
    announced = False
    while True:
        pending = [c for c in list_checkpoints(ckpt_dir) if c.step > last_step]
        if pending:
            ck = pending[0]
            announced = False
            queued = f"; {len(pending) - 1} newer checkpoint(s) queued" if len(pending) > 1 else ""
            log(f"evaluating {ck.path} (step {ck.step}){queued}")
            try:
                metrics = evaluate(ck.path, ck.step)
            except OdkitError:
                if ck.path.is_dir():
                    raise
                log(f"skipped step {ck.step}: the checkpoint was removed during evaluation (max_to_keep)")
                last_step = ck.step
                continue
            result.evaluated.append((ck.step, metrics))
            last_step = ck.step
            wait_started = clock()
            if final_step and ck.step >= final_step:
                result.reason = f"evaluated the final checkpoint (step {ck.step} >= num_steps {final_step})"
                break
            if max_evals and len(result.evaluated) >= max_evals:
                result.reason = f"reached eval_config.max_evals = {max_evals}"
                break
            continue
        remaining = eval_timeout - (clock() - wait_started)
        if remaining <= 0:
            result.reason = f"no new checkpoint for {eval_timeout:g} s (--eval_timeout)"
            break
        delay = wait_interval if wait_interval > 0 else poll_interval
        if not announced:
            what = f"a checkpoint newer than step {last_step}" if last_step >= 0 else "a first complete checkpoint"
            log(f"waiting for {what} in {ckpt_dir}: checking every {delay:g} s, giving up in {remaining:.0f} s")
            announced = True
        sleep(min(delay, remaining))
    log(f"stopped: {result.reason}; evaluated {len(result.evaluated)} checkpoint(s): "
        f"steps {[s for s, _ in result.evaluated]}")
    return result


def describe_last(result: ContinuousEvalResult, key: str = "DetectionBoxes_Precision/mAP") -> str:
    if not result.evaluated:
        return "no checkpoint was evaluated"
    step, metrics = result.evaluated[-1]
    value: Any = metrics.get(key)
    return f"last: step {step}" + (f", {key} = {value:.4f}" if isinstance(value, float) else "")
