#!/usr/bin/env bash
# GPU training-step benchmark, one script, meant to finish in under 8 minutes on one H100/H200-class GPU.
# Reference config (SSD ResNet50 V1 FPN 640x640, RetinaNet50, pets: 37 classes) at batch 64 vs torchvision
# retinanet_resnet50_fpn on the same GPU, same size and batch, with fp32 / bf16 autocast and torch.compile off
# and on. Each cell is its own process (benchmarks/train_step.py), so peak memory is per configuration.
# Prints one table at the end and leaves the JSON results in OUT_DIR.
#
#   bash benchmarks/gpu.sh [OUT_DIR]        env: BATCH=64 STEPS=10 WARMUP=3 PYTHON=python3
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/odkit-gpu}}
BATCH=${BATCH:-64}
STEPS=${STEPS:-10}
WARMUP=${WARMUP:-3}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
"$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__)' \
  | tee -a "$OUT/gpu.txt"

for precision in bf16 fp32; do
  for compile in off on; do
    flag=(); [ "$compile" = on ] && flag=(--compile)
    echo "== precision $precision, compile $compile" >&2
    timeout 240 "$PY" benchmarks/train_step.py --device cuda --batch "$BATCH" --steps "$STEPS" --warmup "$WARMUP" \
      --cases ssd_resnet50_fpn_640,retinanet_640 --precision "$precision" "${flag[@]}" \
      --json "$OUT/train_step_${precision}_compile_${compile}.json" || echo "   (failed or timed out)" >&2
  done
done

"$PY" - "$OUT" "$BATCH" <<'PY'
import json, sys
from pathlib import Path
out, batch = Path(sys.argv[1]), sys.argv[2]
rows = []
for f in sorted(out.glob("train_step_*.json")):
    _, _, precision, _, compile = f.stem.split("_")
    for case, r in json.loads(f.read_text()).items():
        rows.append((case, precision, compile, r["img_per_s"], r["peak_mb"]))
print(f"\nGPU train step, 640x640, batch {batch} ({(out / 'gpu.txt').read_text().splitlines()[0]})")
print(f"{'model':24s} {'precision':9s} {'compile':7s} {'img/s':>9s} {'peak GiB':>9s}")
for case, precision, compile, ips, mb in sorted(rows):
    print(f"{case:24s} {precision:9s} {compile:7s} {ips:9.1f} {mb / 1024:9.2f}")
best = {}
for case, precision, compile, ips, mb in rows:
    best.setdefault((precision, compile), {})[case] = ips
for (precision, compile), d in sorted(best.items()):
    if "ssd_resnet50_fpn_640" in d and "retinanet_640" in d:
        print(f"odkit / torchvision, {precision}, compile {compile}: "
              f"x{d['ssd_resnet50_fpn_640'] / d['retinanet_640']:.2f}")
PY
