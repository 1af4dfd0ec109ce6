"""TFRecord container I/O without TensorFlow.

Container format (TensorFlow's ``tensorflow/core/lib/io/record_writer.cc``), relied on here:

* a file is a plain concatenation of records, no file header or footer, no compression;
* each record is ``uint64 length`` (little endian), ``uint32 masked_crc32c(length bytes)``,
  ``length`` bytes of data, ``uint32 masked_crc32c(data)`` (both CRCs little endian);
* ``masked(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8  (mod 2**32)``, crc32c = Castagnoli;
* a record's data is opaque bytes; for the TF OD API it is a serialized ``tf.train.Example``.

Shards are named ``NAME-00003-of-00010`` (5 digits, zero based); example ``i`` goes to shard
``i % num_shards`` as in the TF OD API's ``open_sharded_output_tfrecords``.

Paths may be local or fsspec URLs (``gs://``, ``s3://``, ``https://``, ``memory://``) when fsspec is
installed. Writers write to temporary names and rename on success (local files only).
"""

from __future__ import annotations

from odkit.data.tfrecord.format import frame_record, masked_crc32c, shard_name, shard_pattern
from odkit.data.tfrecord.paths import expand_paths, open_file
from odkit.data.tfrecord.reader import (
    MAX_RECORD_BYTES,
    CorruptRecordData,
    CorruptRecordLength,
    RecordError,
    TFRecordReader,
    TruncatedRecord,
    iter_records,
    iter_records_with_location,
    read_record,
)
from odkit.data.tfrecord.writer import MAX_OPEN_SHARDS, ShardedWriter, TFRecordWriter, write_records

__all__ = [
    "MAX_OPEN_SHARDS", "MAX_RECORD_BYTES", "CorruptRecordData", "CorruptRecordLength", "RecordError", "ShardedWriter",
    "TFRecordReader", "TFRecordWriter", "TruncatedRecord", "expand_paths", "frame_record", "iter_records",
    "iter_records_with_location", "masked_crc32c", "open_file", "read_record", "shard_name", "shard_pattern",
    "write_records",
]
