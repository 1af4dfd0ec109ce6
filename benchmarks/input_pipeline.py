"""Input pipeline throughput for the reference pets config's train input.

decode JPEG -> random_horizontal_flip -> random_crop_image (pets parameters) -> 640x640 fixed_shape_resizer
-> batch, reported as images/s per CPU core (num_workers=0: one process; torch threads = 1).
With TensorFlow importable, an equivalent tf.data pipeline is timed too.

Usage: python benchmarks/input_pipeline.py [--records GLOB] [--images 256] [--batch_size 8] [--workers 0]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ODKIT_SHARED_DIR", REPO.parent / "shared"))
PETS_CONFIG = SHARED / "compat" / "tfod_configs" / "pets_ssd_resnet50_v1_fpn_640x640.config"
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

    torch.set_num_threads(1)
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


def bench_tf(records: str, images: int, batch_size: int) -> float | None:
    try:
        import tensorflow as tf  # noqa: F401
    except ImportError:
        return None
    import glob

    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.threading.set_intra_op_parallelism_threads(1)
    feats = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
             "image/object/bbox/ymin": tf.io.VarLenFeature(tf.float32),
             "image/object/bbox/xmin": tf.io.VarLenFeature(tf.float32),
             "image/object/bbox/ymax": tf.io.VarLenFeature(tf.float32),
             "image/object/bbox/xmax": tf.io.VarLenFeature(tf.float32)}

    def parse(rec: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ex = tf.io.parse_single_example(rec, feats)
        img = tf.cast(tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False), tf.float32)
        boxes = tf.stack([tf.sparse.to_dense(ex[f"image/object/bbox/{k}"]) for k in ("ymin", "xmin", "ymax", "xmax")], 1)
        img = tf.image.random_flip_left_right(img)
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            tf.shape(img), tf.expand_dims(tf.clip_by_value(boxes, 0.0, 1.0), 0), min_object_covered=0.0,
            aspect_ratio_range=(0.75, 3.0), area_range=(0.75, 1.0), max_attempts=100,
            use_image_if_no_bounding_boxes=True)
        img = tf.slice(img, begin, size)
        img = tf.image.resize(img, [640, 640])
        return tf.cast(img, tf.uint8), boxes

    ds = tf.data.TFRecordDataset(sorted(glob.glob(records))).repeat().map(parse).padded_batch(batch_size)
    it = iter(ds)
    next(it)
    done = 0
    start = time.perf_counter()
    while done < images:
        done += int(next(it)[0].shape[0])
    return done / (time.perf_counter() - start)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", default=None, help="TFRecord glob (default: the shared TF-written pets records)")
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers (0 = main process, one core)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        records = args.records or (str(PETS_RECORDS) if PETS_RECORDS.parent.is_dir() else _synthetic_records(tmp))
        cores = max(1, args.workers)
        rate = bench_odkit(records, _config_path(tmp), args.images, args.batch_size, args.workers)
        print(f"odkit input pipeline (pets train input, 640x640, batch {args.batch_size}, workers {args.workers}): "
              f"{rate:.1f} img/s = {rate / cores:.1f} img/s per CPU core")
        tf_rate = bench_tf(records, args.images, args.batch_size)
        if tf_rate is None:
            print("tf.data: tensorflow not installed")
        else:
            print(f"tf.data equivalent (1 thread): {tf_rate:.1f} img/s per CPU core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
