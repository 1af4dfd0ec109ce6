"""Read + decode throughput of TFRecords: odkit vs the `tfrecord` PyPI reader vs tf.data (when installed).

    python benchmarks/records.py [--pattern 'pets/pet_faces_train.record-?????-of-00010'] [--num 300]

Without --pattern it writes --num synthetic 320x240 JPEG examples to a temp folder first. Every reader
does the same work: read each record, parse the tf.Example, decode the JPEG to RGB uint8. Runs in one
process, one thread (torch.set_num_threads(1)), so the numbers compare readers, not core counts.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time

import numpy as np


def make_records(folder: str, num: int, shards: int = 2) -> str:
    from PIL import Image

    from odkit.data.example import encode_detection_example
    from odkit.data.tfrecord import ShardedWriter

    rng = np.random.default_rng(0)
    prefix = os.path.join(folder, "bench.record")
    with ShardedWriter(prefix, shards) as w:
        for i in range(num):
            arr = (rng.random((240, 320, 3)) * 64 + np.linspace(0, 180, 320)[None, :, None]).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, format="JPEG", quality=90)
            w.write(encode_detection_example(buf.getvalue(), format="jpeg", height=240, width=320,
                                             filename=f"{i}.jpg", boxes=[[0.1, 0.1, 0.5, 0.5]], labels=[1],
                                             texts=["a"]))
    return w.pattern


def timed(fn, *args) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = fn(*args)
    return n, time.perf_counter() - t0


def odkit_sequential(pattern: str) -> int:
    from odkit.data.example import decode_detection_example
    from odkit.data.image_io import decode_image
    from odkit.data.tfrecord import iter_records

    n = 0
    for data in iter_records(pattern):
        decode_image(decode_detection_example(data).image)
        n += 1
    return n


def odkit_random_access(pattern: str) -> int:
    from odkit.data.example import decode_detection_example
    from odkit.data.image_io import decode_image
    from odkit.data.tfrecord import TFRecordReader, expand_paths, read_record

    items = [(p, o) for p in expand_paths(pattern) for o in TFRecordReader(p).index()]
    order = np.random.default_rng(0).permutation(len(items))
    for i in order:
        p, o = items[i]
        decode_image(decode_detection_example(read_record(p, o)).image)
    return len(items)


def odkit_read_only(pattern: str) -> int:
    from odkit.data.tfrecord import iter_records

    return sum(1 for _ in iter_records(pattern))


def pypi_tfrecord(pattern: str) -> int:
    import torch
    from tfrecord.reader import tfrecord_loader  # the `tfrecord` PyPI package
    from torchvision.io import ImageReadMode, decode_jpeg

    from odkit.data.tfrecord import expand_paths

    n = 0
    for p in expand_paths(pattern):
        for rec in tfrecord_loader(p, None, {"image/encoded": "byte"}):
            decode_jpeg(torch.from_numpy(np.asarray(rec["image/encoded"])), mode=ImageReadMode.RGB)
            n += 1
    return n


def tf_data(pattern: str) -> int:
    import tensorflow as tf

    from odkit.data.tfrecord import expand_paths

    spec = {"image/encoded": tf.io.FixedLenFeature([], tf.string)}
    ds = tf.data.TFRecordDataset(expand_paths(pattern)).map(
        lambda x: tf.io.decode_jpeg(tf.io.parse_single_example(x, spec)["image/encoded"], channels=3))
    return sum(1 for _ in ds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", help="existing records (default: write synthetic ones)")
    ap.add_argument("--num", type=int, default=300, help="synthetic examples to write")
    ap.add_argument("--repeat", type=int, default=2, help="runs per reader; the best is reported")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        pattern = args.pattern or make_records(tmp, args.num)
        print(f"records: {pattern}")
        runs = [("odkit sequential read+decode", odkit_sequential),
                ("odkit random access (index) read+decode", odkit_random_access),
                ("odkit read only (CRC-checked, no decode)", odkit_read_only),
                ("tfrecord (PyPI) read+decode", pypi_tfrecord),
                ("tf.data read+decode", tf_data)]
        for name, fn in runs:
            try:
                best = None
                for _ in range(args.repeat):
                    n, dt = timed(fn, pattern)
                    best = dt if best is None or dt < best else best
                print(f"{name:45s} {n / best:9.1f} img/s  ({n} records, best of {args.repeat}: {best:.2f} s)")
            except ImportError as exc:
                print(f"{name:45s} not installed ({exc.name})")


if __name__ == "__main__":
    main()
