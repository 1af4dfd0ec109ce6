"""Input pipeline throughput for the reference pets config's train input.

decode JPEG -> random_horizontal_flip -> random_crop_image (pets parameters) -> 640x640 fixed_shape_resizer
-> batch, reported as images/s per CPU core (num_workers=0: one process pinned to one CPU; torch threads = 1).
Peer: the same records and config through the TF OD API's own augmentation ops in tf.data with every TF thread
pool at 1, pinned to the same CPU (benchmarks/tfdata_input_pipeline.py, run in the TF venv described in
../shared/tools/tfod_reference/README.md: ODKIT_TFOD_VENV, default ~/tfod-venv; ODKIT_TFOD_SRC, default
~/tfod-src). TensorFlow is never imported here; without the venv the column says so and is skipped.

Usage: python benchmarks/input_pipeline.py [--records GLOB] [--images 256] [--batch_size 8] [--workers 0]
                                           [--repeats 3] [--no-tf]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))
PETS_CONFIG = SHARED / "compat" / "tfod_configs" / "pets_ssd_resnet50_v1_fpn_640x640.config"
TF_SCRIPT = Path(__file__).resolve().with_name("tfdata_input_pipeline.py")
PETS_RECORDS = SHARED / "compat" / "tfrecords_tf" / "pet_faces_tf.record-?????-of-00002"


def _config_path(tmp: str) -> str:
    if PETS_CONFIG.is_file():
        return str(PETS_CONFIG)
    text = """model { ssd { num_classes: 37 image_resizer { fixed_shape_resizer { height: 640 width: 640 } } } }
    train_config { batch_size: 64 max_number_of_boxes: 100
      data_augmentation_options { random_horizontal_flip {} }
      data_augmentation_options { random_crop_image { min_object_covered: 0.0 min_aspect_ratio: 0.75
        max_aspect_ratio: 3.0 min_area: 0.75 max_area: 1.0 overlap_thresh: 0.0 } } }
    train_input_reader { tf_record_input_reader { input_path: "x" } }"""
    path = os.path.join(tmp, "pets.config")
    Path(path).write_text(text)
    return path


def _synthetic_records(tmp: str, n: int = 32) -> str:
    import io

    import numpy as np
    from PIL import Image

    from odkit.data.example import encode_detection_example
    from odkit.data.tfrecord import ShardedWriter

    rng = np.random.default_rng(0)
    with ShardedWriter(os.path.join(tmp, "synth.record"), 2) as w:
        for i in range(n):
            arr = rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            w.write(encode_detection_example(buf.getvalue(), format="jpeg", height=375, width=500,
                                             filename=f"{i}.jpg", boxes=np.array([[0.2, 0.2, 0.7, 0.6]], np.float32),
                                             labels=[1 + i % 37]))
    return os.path.join(tmp, "synth.record-?????-of-00002")


def bench_odkit(records: str, config_path: str, images: int, batch_size: int, workers: int) -> float:
    import torch

    from odkit.config.loader import load
    from odkit.inputs.builder import build_input_loader
    from odkit.runtime import keep_freed_memory

    torch.set_num_threads(1)
    keep_freed_memory()  # as in `odkit train` (its loader workers inherit it)
    cfg = load(config_path, [f"train_input_reader.tf_record_input_reader.input_path={records}",
                             "train_input_reader.label_map_path="])
    loader = build_input_loader(cfg.train_input_reader, cfg.model, cfg.train_config, is_training=True,
                                batch_size=batch_size, seed=0, num_workers=workers)
    it = iter(loader)
    next(it)  # warm-up (index, workers, first decode)
    done = 0
    start = time.perf_counter()
    while done < images:
        batch = next(it)
        done += batch["images"].shape[0]
    elapsed = time.perf_counter() - start
    assert batch["images"].shape[1:] == (3, 640, 640)
    return done / elapsed


def bench_tf(records: str, config_path: str, images: int, batch_size: int, cpu: int | None) -> float | str:
    """tf.data img/s for the same records and config (tfdata_input_pipeline.py in the TF venv), or why skipped."""
    venv = Path(os.environ.get("ODKIT_TFOD_VENV", Path.home() / "tfod-venv"))
    src = Path(os.environ.get("ODKIT_TFOD_SRC", Path.home() / "tfod-src"))
    py = venv / "bin/python"
    if not py.exists() or not (src / "research/object_detection").is_dir():
        return (f"skipped: TF OD API venv not found (want {py} and {src}/research/object_detection;"
                " see ../shared/tools/tfod_reference/README.md)")
    env = {**os.environ, "PYTHONPATH": f"{src / 'research'}:{src}", "TF_USE_LEGACY_KERAS": "1",
           "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [str(py), str(TF_SCRIPT), config_path, records, "--images", str(images), "--batch_size", str(batch_size)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env,
                         preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})))
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT")), None)
    if out.returncode != 0 or line is None:
        return f"failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1:]}"
    return float(line.split()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", default=None, help="TFRecord glob (default: the shared TF-written pets records)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 = main process, one core)")
    p.add_argument("--repeats", type=int, default=1, help="odkit and tf.data runs, alternated; medians reported")
    p.add_argument("--no-tf", action="store_true", help="skip the tf.data column")
    args = p.parse_args()
    # one core for both sides: with --workers 0 the odkit run and the tf.data subprocess are pinned to the same CPU
    cpu = min(os.sched_getaffinity(0)) if args.workers == 0 and hasattr(os, "sched_setaffinity") else None
    with tempfile.TemporaryDirectory() as tmp:
        records = args.records or (str(PETS_RECORDS) if PETS_RECORDS.parent.is_dir() else _synthetic_records(tmp))
        config = _config_path(tmp)
        cores = max(1, args.workers)
        ours: list[float] = []
        theirs: list[float] = []
        skipped = None
        for _ in range(args.repeats):
            if cpu is not None:
                old = os.sched_getaffinity(0)
                os.sched_setaffinity(0, {cpu})
            ours.append(bench_odkit(records, config, args.images, args.batch_size, args.workers) / cores)
            if cpu is not None:
                os.sched_setaffinity(0, old)
            if not args.no_tf and skipped is None:
                r = bench_tf(records, config, args.images, args.batch_size, cpu)
                if isinstance(r, str):
                    skipped = r
                else:
                    theirs.append(r)
        rate = statistics.median(ours)
        print(f"odkit input pipeline (pets train input, 640x640, batch {args.batch_size}, workers {args.workers}): "
              f"{rate:.1f} img/s per CPU core (runs: {', '.join(f'{x:.1f}' for x in ours)})")
        if args.no_tf:
            print("tf.data: skipped (--no-tf)")
        elif skipped is not None:
            print(f"tf.data: {skipped}")
        else:
            tf_rate = statistics.median(theirs)
            print(f"tf.data, TF OD API ops (1 thread, 1 core): {tf_rate:.1f} img/s per CPU core "
                  f"(runs: {', '.join(f'{x:.1f}' for x in theirs)})")
            print(f"odkit / tf.data per core: x{rate / tf_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
