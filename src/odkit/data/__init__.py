"""Data: TFRecord I/O, tf.Example codec, label maps, image decoding, dataset converters, download.

Submodules are imported explicitly (``from odkit.data.tfrecord import expand_paths``); nothing heavy here.
"""
