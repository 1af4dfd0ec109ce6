"""Server metrics in Prometheus text format (counters, histograms, an images/s gauge).

Updated from the event loop only (no locks). With ``--workers N`` each process keeps its own numbers.
"""

from __future__ import annotations

import bisect
import time
from collections import Counter, deque

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
RATE_WINDOW_S = 10.0


class Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> list[str]:
        out, cum = [], 0
        sep = "," if labels else ""
        for b, c in zip(self.buckets, self.counts):
            cum += c
            out.append(f'{name}_bucket{{{labels}{sep}le="{b:g}"}} {cum}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        lab = f"{{{labels}}}" if labels else ""
        out += [f"{name}_sum{lab} {self.sum:.6f}", f"{name}_count{lab} {self.count}"]
        return out


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (model, endpoint, code)
        self.errors: Counter[tuple[str, str, int]] = Counter()
        self.latency: dict[str, Histogram] = {}
        self.batch_size: dict[str, Histogram] = {}
        self.images: Counter[str] = Counter()
        self._recent: deque[tuple[float, int]] = deque()  # (time, images) for the images/s gauge

    def request(self, model: str, endpoint: str, code: int, seconds: float) -> None:
        self.requests[(model, endpoint, code)] += 1
        if code >= 400:
            self.errors[(model, endpoint, code)] += 1
        self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, model: str, size: int) -> None:
        self.batch_size.setdefault(model, Histogram(BATCH_BUCKETS)).observe(size)
        self.images[model] += size
        now = time.monotonic()
        self._recent.append((now, size))
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._recent and self._recent[0][0] < now - RATE_WINDOW_S:
            self._recent.popleft()

    def images_per_second(self) -> float:
        now = time.monotonic()
        self._trim(now)
        return sum(n for _, n in self._recent) / RATE_WINDOW_S

    def render(self) -> str:
        lines = [
            "# HELP odkit_serve_requests_total HTTP requests by model, endpoint and status code.",
            "# TYPE odkit_serve_requests_total counter",
        ]
        for (m, e, c), n in sorted(self.requests.items()):
            lines.append(f'odkit_serve_requests_total{{model="{_esc(m)}",endpoint="{e}",code="{c}"}} {n}')
        lines += ["# HELP odkit_serve_errors_total Requests answered with a 4xx or 5xx status.",
                  "# TYPE odkit_serve_errors_total counter"]
        for (m, e, c), n in sorted(self.errors.items()):
            lines.append(f'odkit_serve_errors_total{{model="{_esc(m)}",endpoint="{e}",code="{c}"}} {n}')
        lines += ["# HELP odkit_serve_request_duration_seconds Time from request start to response, by endpoint.",
                  "# TYPE odkit_serve_request_duration_seconds histogram"]
        for e, h in sorted(self.latency.items()):
            lines += h.lines("odkit_serve_request_duration_seconds", f'endpoint="{e}"')
        lines += ["# HELP odkit_serve_batch_size Images per onnxruntime run.",
                  "# TYPE odkit_serve_batch_size histogram"]
        for m, h in sorted(self.batch_size.items()):
            lines += h.lines("odkit_serve_batch_size", f'model="{_esc(m)}"')
        lines += ["# HELP odkit_serve_images_total Images run through a model.",
                  "# TYPE odkit_serve_images_total counter"]
        for m, n in sorted(self.images.items()):
            lines.append(f'odkit_serve_images_total{{model="{_esc(m)}"}} {n}')
        lines += [f"# HELP odkit_serve_images_per_second Images per second over the last {RATE_WINDOW_S:g} s.",
                  "# TYPE odkit_serve_images_per_second gauge",
                  f"odkit_serve_images_per_second {self.images_per_second():.3f}",
                  "# HELP odkit_serve_uptime_seconds Seconds since the server started.",
                  "# TYPE odkit_serve_uptime_seconds gauge",
                  f"odkit_serve_uptime_seconds {time.time() - self.started:.1f}"]
        return "\n".join(lines) + "\n"
