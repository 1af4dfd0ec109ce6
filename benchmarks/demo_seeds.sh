#!/usr/bin/env bash
# `odkit demo` for 3 seeds (--seed sets the built-in data, the model's initialisation, the data order and
# augmentation): prints mAP@0.5, mAP@0.5:0.95 and wall-clock minutes (data generation included) per seed.
# The demo's bar is mAP@0.5 >= 0.9 for every seed in <= 10 minutes on 2 idle cores.
# Usage: bash benchmarks/demo_seeds.sh [WORKDIR] [SEEDS...]     (env: PYTHON=python3, DEMO_ARGS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/odkit-demo-seeds}
shift || true
SEEDS=${*:-1 2 3}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$W"
for s in $SEEDS; do
  start=$(date +%s)
  $PY -m odkit demo --seed "$s" --workdir "$W/seed-$s" --fresh ${DEMO_ARGS:-} > "$W/seed-$s.log" 2>&1
  end=$(date +%s)
  $PY - "$W/seed-$s/summary.json" "$s" "$start" "$end" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
k = m["metrics"]
mins = (int(sys.argv[4]) - int(sys.argv[3])) / 60
ok = "ok" if k["DetectionBoxes_Precision/mAP@.50IOU"] >= 0.9 and mins <= 10 else "BELOW THE BAR"
print(f"seed {sys.argv[2]}: mAP@0.5 {k['DetectionBoxes_Precision/mAP@.50IOU']:.3f}  "
      f"mAP@0.5:0.95 {k['DetectionBoxes_Precision/mAP']:.3f}  {mins:.1f} min  {ok}", flush=True)
PY
  grep -m1 '^training ' "$W/seed-$s.log" || true
done
