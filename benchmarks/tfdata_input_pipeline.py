"""tf.data side of benchmarks/input_pipeline.py: run ONLY in the TF OD API venv (a measuring instrument).

Never imported by odkit or its tests. input_pipeline.py starts it as a subprocess with the venv's python and
PYTHONPATH=<tfod-src>/research:<tfod-src> (see ../shared/tools/tfod_reference/README.md), pinned to one CPU.

Same TFRecords and config as the odkit side; the TF OD API's own ops for the config's train input: parse +
JPEG decode (as TfExampleDecoder, whose tf_slim code does not run on TF 2.21), preprocessor.random_horizontal_flip,
preprocessor.random_crop_image with the configured parameters, resize to the fixed_shape_resizer's size
(bilinear), padded_batch. Not timed (as on the odkit side): model.preprocess normalisation, one-hot, padding.
All TF thread pools are set to 1 (intra-op, inter-op, tf.data private pool), so the rate is per CPU core.

    python tfdata_input_pipeline.py CONFIG RECORDS_GLOB --images N --batch_size B
Prints one line: RESULT <img/s>.
"""
import argparse
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402


def _dataset(configs, records, batch_size):
    import glob

    from object_detection.core import preprocessor

    crop = None
    for step in configs["train_config"].data_augmentation_options:
        if step.WhichOneof("preprocessing_step") == "random_crop_image":
            crop = step.random_crop_image
    resizer = configs["model"].ssd.image_resizer.fixed_shape_resizer
    size = [resizer.height, resizer.width]
    feats = {"image/encoded": tf.io.FixedLenFeature([], tf.string),
             "image/object/class/label": tf.io.VarLenFeature(tf.int64),
             **{f"image/object/bbox/{k}": tf.io.VarLenFeature(tf.float32) for k in ("ymin", "xmin", "ymax", "xmax")}}

    def transform(rec):
        # what TfExampleDecoder does for these records (its tf_slim code does not run on TF 2.21)
        ex = tf.io.parse_single_example(rec, feats)
        img = tf.io.decode_image(ex["image/encoded"], channels=3, expand_animations=False)
        img = tf.cast(img, tf.float32)  # the TF OD API augments float images (augment_input_data)
        boxes = tf.stack([tf.sparse.to_dense(ex[f"image/object/bbox/{k}"])
                          for k in ("ymin", "xmin", "ymax", "xmax")], 1)
        classes = tf.cast(tf.sparse.to_dense(ex["image/object/class/label"]), tf.int32)
        img, boxes = preprocessor.random_horizontal_flip(img, boxes)
        if crop is not None:
            weights = tf.ones_like(classes, tf.float32)  # groundtruth_weights default
            img, boxes, classes = preprocessor.random_crop_image(
                img, boxes, classes, weights, min_object_covered=crop.min_object_covered,
                aspect_ratio_range=(crop.min_aspect_ratio, crop.max_aspect_ratio),
                area_range=(crop.min_area, crop.max_area), overlap_thresh=crop.overlap_thresh,
                clip_boxes=crop.clip_boxes, random_coef=crop.random_coef)[:3]
        img = tf.image.resize(img, size, method=tf.image.ResizeMethod.BILINEAR)  # fixed_shape_resizer default
        return img, boxes, classes

    ds = tf.data.TFRecordDataset(sorted(glob.glob(records))).repeat().map(transform)
    return ds.padded_batch(batch_size, padded_shapes=([*size, 3], [None, 4], [None]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("records")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--batch_size", type=int, default=8)
    a = ap.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.random.set_seed(0)
    from object_detection.utils import config_util

    configs = config_util.get_configs_from_pipeline_file(a.config)
    ds = _dataset(configs, a.records, a.batch_size)
    opts = tf.data.Options()
    opts.threading.private_threadpool_size = 1
    opts.threading.max_intra_op_parallelism = 1
    ds = ds.with_options(opts)
    it = iter(ds)
    next(it)  # warm-up (graph tracing, first decode)
    done = 0
    start = time.perf_counter()
    while done < a.images:
        batch = next(it)
        img = batch[0]
        done += int(img.shape[0])
    rate = done / (time.perf_counter() - start)
    print(f"RESULT {rate:.3f} img/s shape {tuple(img.shape)}", flush=True)


if __name__ == "__main__":
    main()
