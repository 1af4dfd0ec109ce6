"""One progress line per logging window: step, losses, learning rate, img/s and ETA."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class Progress:
    """Throughput and ETA over the steps run in this process (resumed steps excluded)."""

    def __init__(self, start_step: int, total_steps: int | None, global_batch: int, stream: TextIO | None = None):
        self.start_step = start_step
        self.total_steps = total_steps
        self.global_batch = global_batch
        self.stream = stream or sys.stdout
        self.t0 = time.perf_counter()
        self.window_t = self.t0
        self.window_step = start_step

    def images_per_sec(self, step: int) -> float:
        now = time.perf_counter()
        dt = max(now - self.window_t, 1e-9)
        rate = (step - self.window_step) * self.global_batch / dt
        self.window_t, self.window_step = now, step
        return rate

    def eta(self, step: int) -> float | None:
        if not self.total_steps or step <= self.start_step:
            return None
        per_step = (time.perf_counter() - self.t0) / (step - self.start_step)
        return per_step * (self.total_steps - step)

    def line(self, step: int, losses: dict[str, float], lr: float, img_per_sec: float) -> str:
        total = f"/{self.total_steps}" if self.total_steps else ""
        parts = [f"step {step}{total}", f"loss {losses.get('Loss/total_loss', float('nan')):.4f}"]
        detail = [
            f"{k.removeprefix('Loss/').removesuffix('_loss')} {v:.4f}"
            for k, v in losses.items()
            if k != "Loss/total_loss"
        ]
        if detail:
            parts[-1] += " (" + ", ".join(detail) + ")"
        parts.append(f"lr {lr:.3g}")
        parts.append(f"{img_per_sec:.1f} img/s")
        eta = self.eta(step)
        if eta is not None:
            parts.append(f"ETA {format_duration(eta)}")
        return "  ".join(parts)

    def emit(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
