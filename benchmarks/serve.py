"""Load test of `odkit serve` on 127.0.0.1, next to sequential `odkit predict` on the same model and images.

    python benchmarks/serve.py [--model EXPORT_DIR] [--images DIR] [--clients 8 32] [--requests 100]

Without --model it exports the demo SSD (MobileNet v2 FPN-lite 128x128, untrained weights; needs torch);
without --images it takes 16 raccoon photos from ../shared (or synthetic ones), all re-encoded at 640x480
so that concurrent requests can share a batch (the micro-batcher stacks images of the same size only).

For each server setting (no micro-batching: --max_batch 1; micro-batching: --max_batch 8) and each client
count, every client sends --requests POST :detect requests (raw JPEG body) one after another on its own
keep-alive connection. Printed: requests/s, latency p50/p95/p99, errors, mean batch size (from /metrics).
Only 127.0.0.1 is contacted. The clients run in this process and share the CPU with the server.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare_images(src: Path | None, out: Path, count: int, size: tuple[int, int]) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    candidates = sorted(src.glob("*.jpg")) if src else []
    if not candidates and (SHARED / "datasets/raccoon/images").is_dir():
        candidates = sorted((SHARED / "datasets/raccoon/images").glob("*.jpg"))
    paths = []
    rng = np.random.default_rng(0)
    for i in range(count):
        if candidates:
            img = Image.open(candidates[i % len(candidates)]).convert("RGB").resize(size, Image.BILINEAR)
        else:
            img = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))
        p = out / f"img{i:03d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def predict_rate(model: Path, images: list[Path], out: Path, repeats: int, draw: bool) -> float:
    """Images/s of `odkit predict` (the same code path, in this process), best of ``repeats`` passes."""
    from odkit.inference.detector import Detector
    from odkit.inference.predict import predict_images

    det = Detector(model, "onnx")
    predict_images(det, images[:2], out, min_score=0.5, draw=draw, progress=lambda _m: None)  # warm-up
    best = 0.0
    for _ in range(repeats):
        s = predict_images(det, images, out, min_score=0.5, draw=draw, progress=lambda _m: None)
        best = max(best, len(images) / s.seconds)
    return best


def start_server(model: Path, port: int, max_batch: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen([sys.executable, "-m", "odkit", "serve", "--model", f"bench={model}", "--port", str(port),
                             "--max_batch", str(max_batch), "--host", "127.0.0.1"],
                            env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {log.read_text()}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def batch_stats(port: int) -> tuple[float, int]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    total = re.search(r'odkit_serve_batch_size_sum\{model="bench"\} ([\d.]+)', text)
    count = re.search(r'odkit_serve_batch_size_count\{model="bench"\} (\d+)', text)
    return (float(total.group(1)) if total else 0.0), (int(count.group(1)) if count else 0)


def load(port: int, bodies: list[bytes], clients: int, requests: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine, bad = [], 0
        barrier.wait()
        for i in range(requests):
            body = bodies[(k + i) % len(bodies)]
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/v1/models/bench:detect", body, {"Content-Type": "image/jpeg"})
                resp = conn.getresponse()
                data = resp.read()
                if resp.status != 200 or not data.startswith(b"["):
                    bad += 1
            except OSError:
                bad += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - t0)
        conn.close()
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "rps": len(latencies) / wall, "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)), "p99": float(np.percentile(lat, 99)), "errors": errors[0]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="export folder (default: the demo SSD 128x128, untrained)")
    ap.add_argument("--images", type=Path, help="folder of .jpg files (default: raccoon photos from ../shared)")
    ap.add_argument("--num_images", type=int, default=16)
    ap.add_argument("--size", default="640x480", help="re-encode every image at WxH (default 640x480)")
    ap.add_argument("--clients", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--requests", type=int, default=100, help="requests per client (default 100)")
    ap.add_argument("--max_batch", type=int, default=8, help="the micro-batching setting (default 8)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory(prefix="odkit_bench_serve_") as tmp_s:
        tmp = Path(tmp_s)
        model = args.model
        if model is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # test-only model
            from tiny_model import export_untrained_demo_ssd

            print("exporting the demo SSD (128x128, untrained weights) ...", file=sys.stderr)
            model = export_untrained_demo_ssd(tmp / "model", size=128, class_names=("raccoon",))
        images = prepare_images(args.images, tmp / "images", args.num_images, (w, h))
        bodies = [p.read_bytes() for p in images]
        results: dict[str, object] = {"model": str(args.model or "demo SSD 128x128 (untrained)"),
                                      "images": f"{len(images)} x {w}x{h} JPEG", "cpus": os.cpu_count(),
                                      "load_avg_before": os.getloadavg()}
        reps = max(1, 64 // len(images))
        results["predict_images_per_s_no_draw"] = predict_rate(model, images * reps, tmp / "pred", 2, draw=False)
        results["predict_images_per_s_draw"] = predict_rate(model, images * reps, tmp / "pred", 1, draw=True)
        print(f"odkit predict (sequential, same model and images): {results['predict_images_per_s_no_draw']:.1f} "
              f"images/s with --no_draw, {results['predict_images_per_s_draw']:.1f} images/s drawing", flush=True)
        rows = []
        for label, max_batch in (("no batching (--max_batch 1)", 1), (f"micro-batching (--max_batch {args.max_batch})",
                                                                      args.max_batch)):
            port = free_port()
            proc = start_server(model, port, max_batch, tmp / f"server{max_batch}.log")
            try:
                load(port, bodies, 4, 5)  # warm-up
                for clients in args.clients:
                    s0, c0 = batch_stats(port)
                    r = load(port, bodies, clients, args.requests)
                    s1, c1 = batch_stats(port)
                    r["mean_batch"] = (s1 - s0) / max(1, c1 - c0)
                    rows.append({"server": label, "clients": clients, **r})
                    print(f"{label:32s} {clients:3d} clients x {args.requests}: {r['rps']:7.1f} req/s  "
                          f"p50 {r['p50']:6.1f} ms  p95 {r['p95']:6.1f} ms  p99 {r['p99']:6.1f} ms  "
                          f"errors {r['errors']}  mean batch {r['mean_batch']:.2f}", flush=True)
            finally:
                proc.terminate()
                proc.wait(timeout=30)
        results["rows"] = rows
        results["load_avg_after"] = os.getloadavg()
        print(f"load average before / after: {results['load_avg_before']} / {results['load_avg_after']}")
        if args.json:
            args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
