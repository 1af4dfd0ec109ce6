"""The TFRecord container format (TensorFlow's ``tensorflow/core/lib/io/record_writer.cc``): record framing,
masked CRC32-C, shard names."""

from __future__ import annotations

import struct

import crc32c as _crc32c

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")


def masked_crc32c(data: bytes | memoryview) -> int:
    """TensorFlow's masked CRC32-C of ``data``."""
    crc = _crc32c.crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


def frame_record(data: bytes) -> bytes:
    """The container bytes for one record (header, data, footer)."""
    length = struct.pack("<Q", len(data))
    return length + _U32.pack(masked_crc32c(length)) + data + _U32.pack(masked_crc32c(data))


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    """``prefix-00003-of-00010``."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}"


def shard_pattern(prefix: str, num_shards: int) -> str:
    """The glob matching all shards written by ``ShardedWriter(prefix, num_shards)``."""
    return f"{prefix}-?????-of-{num_shards:05d}"
