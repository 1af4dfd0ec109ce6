#!/usr/bin/env bash
# Demo training speed with and without one other CPU-bound process on the machine (thread over-subscription).
# Trains the demo model (128x128 FPN-lite, batch 16) for STEPS steps on the built-in data, first alone, then
# while `python -c 'while True: pass'` runs, and prints img/s (mean of the progress lines after the first
# window) and the slow-down. The thread/worker choice is odkit's own (odkit.runtime.plan_threads), printed in
# the "training ..." line.
# Usage: bash benchmarks/demo_contention.sh [WORKDIR]   (env: STEPS=100, PYTHON=python3, TRAIN_ARGS=...)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-/tmp/odkit-contention}
STEPS=${STEPS:-100}
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$W"
if [ ! -f "$W/pipeline.config" ]; then
  $PY - "$W" <<'PY'
import sys
from pathlib import Path
from odkit import config as cfg
from odkit.cli import main
from odkit.data.synthetic import SyntheticSpec, generate_pets_like
from odkit.demo import CONFIG_DIR, DEFAULT_CONFIG, breeds_in, write_label_map
w = Path(sys.argv[1])
generate_pets_like(w / "data", SyntheticSpec(images_per_class=120, seed=0))
write_label_map(breeds_in(w / "data"), w / "label_map.pbtxt")
main(["create-pet-tfrecord", "--data_dir", str(w / "data"), "--output_dir", str(w / "records"),
      "--label_map_path", str(w / "label_map.pbtxt"), "--num_shards", "2"])
ov = [f"train_input_reader.tf_record_input_reader.input_path={w}/records/pet_faces_train.record-?????-of-00002",
      f"train_input_reader.label_map_path={w}/label_map.pbtxt", "model.ssd.num_classes=4"]
cfg.save(cfg.load(str(CONFIG_DIR / f"{DEFAULT_CONFIG}.config"), overrides=ov), str(w / "pipeline.config"))
PY
fi

rate() {  # mean img/s over the progress lines after the first (warm-up) window
  grep -o '[0-9.]* img/s' "$1" | awk 'NR>1 {s+=$1; n++} END {if (n) printf "%.1f", s/n; else print "nan"}'
}
train() {
  rm -rf "$W/model"
  $PY -m odkit train --pipeline_config_path "$W/pipeline.config" --model_dir "$W/model" \
      --num_train_steps "$STEPS" --log_every_n 20 --checkpoint_every_n 100000 ${TRAIN_ARGS:-} > "$W/$1.log" 2>&1
  grep -m1 '^training ' "$W/$1.log"
}

train alone
ALONE=$(rate "$W/alone.log")
$PY -c 'while True: pass' &
HOG=$!
trap 'kill $HOG 2>/dev/null || true' EXIT
train contended
CONTENDED=$(rate "$W/contended.log")
kill $HOG
echo "demo training, $STEPS steps, batch 16: alone $ALONE img/s; with one CPU-bound process $CONTENDED img/s;" \
     "slow-down $(awk -v a="$ALONE" -v b="$CONTENDED" 'BEGIN {printf "%.2fx", a/b}')"
