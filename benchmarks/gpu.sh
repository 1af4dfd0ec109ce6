#!/usr/bin/env bash
# GPU benchmark (runs in well under 8 minutes on one H100/H200-class GPU):
#   1. the reference pets config (SSD ResNet50 V1 FPN 640x640, RetinaNet50) trained for STEPS steps at
#      batch 64 with bf16 autocast -> img/s and peak GPU memory, from odkit's own progress output;
#   2. torchvision's retinanet_resnet50_fpn on the same GPU, same size and batch (benchmarks/train_step.py).
# Usage: bash benchmarks/gpu.sh [OUT_DIR]      (env: STEPS=300 BATCH=64 PRECISION=bf16)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${OUT:-/tmp/odkit-gpu}}
STEPS=${STEPS:-300}
BATCH=${BATCH:-64}
PRECISION=${PRECISION:-bf16}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"

W="$OUT/work"
if [ ! -d "$W/records" ]; then
  $PY - "$W" <<'PY'
import sys
from pathlib import Path
from odkit.data.synthetic import SyntheticSpec, generate_pets_like
w = Path(sys.argv[1]); w.mkdir(parents=True, exist_ok=True)
generate_pets_like(w / "data", SyntheticSpec(images_per_class=200, test_per_class=0, min_size=320, max_size=640))
PY
  $PY -m odkit create-pet-tfrecord --data_dir "$W/data" --output_dir "$W/records" \
      --label_map_path "$W/data/label_map.pbtxt" --num_shards 10
fi

CFG=src/odkit/configs/ssd_resnet50_v1_fpn_640x640_pets.config
$PY -m odkit train --pipeline_config_path "$CFG" --model_dir "$W/model" --device cuda \
  --precision "$PRECISION" --num_train_steps "$STEPS" --checkpoint_every_n 100000 --log_every_n 50 \
  --override "train_config.batch_size=$BATCH" \
  --override "train_input_reader.tf_record_input_reader.input_path=$W/records/pet_faces_train.record-?????-of-00010" \
  --override "train_input_reader.label_map_path=$W/data/label_map.pbtxt" \
  --override "eval_input_reader.0.tf_record_input_reader.input_path=$W/records/pet_faces_val.record-?????-of-00010" \
  --override "eval_input_reader.0.label_map_path=$W/data/label_map.pbtxt" \
  2>&1 | tee "$OUT/odkit_train.log"

# same-step comparison (fp32, random boxes): odkit SSD ResNet50-FPN 640 vs torchvision RetinaNet, and the
# MobileNet pair; then odkit Faster R-CNN ResNet50-FPN vs torchvision fasterrcnn_resnet50_fpn
$PY benchmarks/train_step.py --device cuda --batch 16 --steps 10 2>&1 | tee "$OUT/train_step.log"
$PY benchmarks/train_step_faster_rcnn.py --device cuda --batch 8 --size 640 --steps 10 --precision "$PRECISION" \
  2>&1 | tee "$OUT/train_step_faster_rcnn.log"
