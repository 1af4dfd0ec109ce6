"""A reader for the LevelDB table format TensorFlow uses for checkpoint `.index` files.

TensorFlow's ``tensorflow/core/lib/io/table*.cc`` is LevelDB's table format: data blocks of
prefix-compressed ``key -> value`` entries with restart points, an index block mapping each data
block's last key to its ``BlockHandle``, a metaindex block and a 48-byte footer ending in a magic
number. Every block is followed by a 5-byte trailer: a compression byte (0 none, 1 snappy) and the
masked CRC32C of the block contents plus that byte. TF's ``BundleWriter`` writes uncompressed blocks;
snappy blocks are decoded anyway (a small pure-Python decoder) so tables written with other options
read too.

Only what a reader needs: iterate every entry in key order. Errors are :class:`TableError` (one line).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import crc32c as _crc32c

from odkit.errors import OdkitError

FOOTER_SIZE = 48  # 2 BlockHandles padded to 40 bytes + 8-byte magic
TABLE_MAGIC = 0xDB4775248B80FB57
BLOCK_TRAILER_SIZE = 5
_MASK_DELTA = 0xA282EAD8


class TableError(OdkitError):
    """A malformed or corrupt SSTable (checkpoint `.index` file)."""


def mask_crc(crc: int) -> int:
    """LevelDB/TF masked CRC32C (``crc32c::Mask``)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    return _crc32c.crc32c(data, value)


def decode_varint(buf: bytes | memoryview, pos: int, limit: int | None = None) -> tuple[int, int]:
    """(value, new_pos) of a little-endian base-128 varint at ``buf[pos]``; ValueError when malformed."""
    end = len(buf) if limit is None else limit
    result = 0
    shift = 0
    while True:
        if pos >= end or shift > 63:
            raise ValueError("bad varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def snappy_decompress(data: bytes) -> bytes:
    """Decode a raw snappy block (the format LevelDB tables use for compressed blocks)."""
    n, pos = decode_varint(data, 0)
    out = bytearray()
    size = len(data)
    while pos < size:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:  # literal
            length = tag >> 2
            if length >= 60:
                nbytes = length - 59
                length = int.from_bytes(data[pos : pos + nbytes], "little")
                pos += nbytes
            length += 1
            if pos + length > size:
                raise ValueError("snappy literal past the end")
            out += data[pos : pos + length]
            pos += length
            continue
        if kind == 1:
            length = ((tag >> 2) & 7) + 4
            offset = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 2], "little")
            pos += 2
        else:
            length = (tag >> 2) + 1
            offset = int.from_bytes(data[pos : pos + 4], "little")
            pos += 4
        if offset == 0 or offset > len(out):
            raise ValueError("snappy copy offset out of range")
        start = len(out) - offset
        for i in range(length):  # overlapping copies are allowed
            out.append(out[start + i])
    if len(out) != n:
        raise ValueError("snappy length mismatch")
    return bytes(out)


class SSTableReader:
    """All entries of a LevelDB-format table held in memory (index files are small)."""

    def __init__(self, data: bytes, where: str) -> None:
        self._data = data
        self._where = where
        if len(data) < FOOTER_SIZE:
            raise TableError(
                f"truncated index file ({len(data)} bytes, a table footer alone is {FOOTER_SIZE})",
                where=where,
            )
        footer = data[-FOOTER_SIZE:]
        (magic,) = struct.unpack("<Q", footer[-8:])
        if magic != TABLE_MAGIC:
            raise TableError(
                "not a TensorFlow checkpoint index (bad table magic; truncated or not an .index file)",
                where=where,
            )
        try:
            _meta_off, p = decode_varint(footer, 0, 40)
            _meta_size, p = decode_varint(footer, p, 40)
            index_off, p = decode_varint(footer, p, 40)
            index_size, p = decode_varint(footer, p, 40)
        except ValueError:
            raise TableError("corrupt table footer", where=where) from None
        self._index_handle = (index_off, index_size)

    def _block(self, offset: int, size: int) -> bytes:
        end = offset + size + BLOCK_TRAILER_SIZE
        if offset < 0 or end > len(self._data) - FOOTER_SIZE:
            raise TableError(
                f"block at offset {offset} (size {size}) runs past the end of the file (truncated?)",
                where=self._where,
            )
        contents = self._data[offset : offset + size]
        ctype = self._data[offset + size]
        (stored,) = struct.unpack("<I", self._data[offset + size + 1 : end])
        actual = mask_crc(crc32c(self._data[offset : offset + size + 1]))
        if stored != actual:
            raise TableError(
                f"CRC mismatch in index block at offset {offset} (file corrupt)", where=self._where
            )
        if ctype == 0:
            return contents
        if ctype == 1:
            try:
                return snappy_decompress(contents)
            except (ValueError, IndexError):
                raise TableError(f"corrupt snappy block at offset {offset}", where=self._where) from None
        raise TableError(f"unknown block compression type {ctype} at offset {offset}", where=self._where)

    def _entries(self, block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
        if len(block) < 4:
            raise TableError(f"corrupt {what} block (too short)", where=self._where)
        (num_restarts,) = struct.unpack("<I", block[-4:])
        limit = len(block) - 4 - 4 * num_restarts
        if limit < 0:
            raise TableError(f"corrupt {what} block (restart array)", where=self._where)
        pos = 0
        key = b""
        try:
            while pos < limit:
                shared, pos = decode_varint(block, pos, limit)
                non_shared, pos = decode_varint(block, pos, limit)
                vlen, pos = decode_varint(block, pos, limit)
                if shared > len(key) or pos + non_shared + vlen > limit:
                    raise ValueError
                key = key[:shared] + block[pos : pos + non_shared]
                pos += non_shared
                yield key, block[pos : pos + vlen]
                pos += vlen
        except ValueError:
            raise TableError(f"corrupt {what} block entry at byte {pos}", where=self._where) from None

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) of the table in key order."""
        index = self._block(*self._index_handle)
        for _last_key, handle in self._entries(index, "index"):
            try:
                off, p = decode_varint(handle, 0)
                size, _ = decode_varint(handle, p)
            except ValueError:
                raise TableError("corrupt block handle in the index block", where=self._where) from None
            yield from self._entries(self._block(off, size), "data")
