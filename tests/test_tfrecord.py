"""TFRecord container: framing, CRCs, index, sharding, atomic writes, path expansion."""

from __future__ import annotations

import os
import struct

import crc32c
import pytest

from odkit.data.example import encode_detection_example
from odkit.data.tfrecord import (
    ShardedWriter,
    TFRecordReader,
    TFRecordWriter,
    expand_paths,
    iter_records,
    iter_records_with_location,
    masked_crc32c,
    read_record,
    shard_name,
    write_records,
)
from odkit.errors import DataError


def _mask(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def test_masked_crc_matches_definition() -> None:
    assert crc32c.crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    for data in (b"", b"a", b"hello world" * 10):
        assert masked_crc32c(data) == _mask(crc32c.crc32c(data))


def test_written_file_layout_is_the_tf_container(tmp_path) -> None:
    """uint64 LE length, masked crc of the length bytes, data, masked crc of the data; nothing else."""
    path = tmp_path / "a.record"
    records = [b"first", b"", b"x" * 1000]
    assert write_records(str(path), records) == 3
    raw = path.read_bytes()
    pos = 0
    for r in records:
        (length,) = struct.unpack_from("<Q", raw, pos)
        assert length == len(r)
        assert struct.unpack_from("<I", raw, pos + 8)[0] == _mask(crc32c.crc32c(raw[pos : pos + 8]))
        assert raw[pos + 12 : pos + 12 + length] == r
        assert struct.unpack_from("<I", raw, pos + 12 + length)[0] == _mask(crc32c.crc32c(r))
        pos += 16 + length
    assert pos == len(raw)


def test_examples_read_back_byte_identical_to_protobuf_serialization(tmp_path) -> None:
    from odkit.protos import example_pb2

    blobs = [encode_detection_example(b"\xff\xd8\xff" + bytes([i]) * 50, format="jpeg", height=10 + i, width=20,
                                      filename=f"{i}.jpg", boxes=[[0.1, 0.2, 0.5, 0.6]], labels=[i + 1],
                                      texts=[f"c{i}"]) for i in range(5)]
    path = str(tmp_path / "ex.record")
    write_records(path, blobs)
    back = list(iter_records(path))
    assert back == blobs
    for b in back:
        ex = example_pb2.Example()
        ex.ParseFromString(b)
        assert ex.SerializeToString(deterministic=True) == b


def test_index_and_random_access(tmp_path) -> None:
    path = str(tmp_path / "r.record")
    recs = [bytes([i]) * (i * 7 + 1) for i in range(20)]
    write_records(path, recs)
    reader = TFRecordReader(path)
    offsets = reader.index()
    assert len(offsets) == 20 and offsets[0] == 0
    assert offsets[1] == 16 + 1
    for i in (19, 0, 7, 7, 3):
        assert read_record(path, offsets[i]) == recs[i]
    assert list(reader) == recs
    assert len(reader) == 20


def test_sharded_writer_round_robin_and_names(tmp_path) -> None:
    prefix = str(tmp_path / "out" / "data.record")
    with ShardedWriter(prefix, 3) as w:
        for i in range(7):
            w.write(f"r{i}".encode())
        w.write(b"explicit", index=5)  # 5 % 3 -> shard 2
    assert w.counts == [3, 2, 3]
    assert shard_name(prefix, 2, 3).endswith("data.record-00002-of-00003")
    assert [list(iter_records(shard_name(prefix, i, 3))) for i in range(3)] == [
        [b"r0", b"r3", b"r6"], [b"r1", b"r4"], [b"r2", b"r5", b"explicit"]]
    assert sorted(os.listdir(tmp_path / "out")) == [f"data.record-0000{i}-of-00003" for i in range(3)]


def test_writers_are_atomic_on_failure(tmp_path) -> None:
    prefix = str(tmp_path / "d.record")
    with pytest.raises(RuntimeError), ShardedWriter(prefix, 2) as w:
        w.write(b"a")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    with pytest.raises(RuntimeError), TFRecordWriter(str(tmp_path / "x.record")) as w1:
        w1.write(b"a")
        raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def _write(tmp_path, name: str, n: int = 3) -> str:
    p = str(tmp_path / name)
    write_records(p, [f"{name}-{i}".encode() for i in range(n)])
    return p


def test_expand_paths_globs_lists_dirs(tmp_path) -> None:
    a = [_write(tmp_path, f"t.record-0000{i}-of-00003") for i in range(3)]
    b = _write(tmp_path, "other.tfrecord")
    (tmp_path / "label_map.pbtxt").write_text("item { id: 1 name: 'a' }")
    assert expand_paths(str(tmp_path / "t.record-?????-of-00003")) == a
    assert expand_paths(f"{b},{a[1]}") == [b, a[1]]
    assert expand_paths([str(tmp_path / "t.record-*"), b]) == a + [b]
    assert expand_paths(str(tmp_path)) == sorted(a + [b])  # record-like files only
    with pytest.raises(DataError, match="no files match input path .*nothing-"):
        expand_paths(str(tmp_path / "nothing-?????"))
    with pytest.raises(DataError, match="missing.record"):
        expand_paths([a[0], str(tmp_path / "missing.record")])


def test_fsspec_memory_urls() -> None:
    fsspec = pytest.importorskip("fsspec")
    from odkit.data.tfrecord import frame_record

    fs = fsspec.filesystem("memory")
    for i in range(2):
        fs.pipe(f"/odkit_test/m.record-0000{i}-of-00002", frame_record(f"m{i}".encode()) + frame_record(b"z"))
    paths = expand_paths("memory://odkit_test/m.record-?????-of-00002")
    assert len(paths) == 2 and all(p.startswith("memory://") for p in paths)
    assert list(iter_records(paths)) == [b"m0", b"z", b"m1", b"z"]
    offs = TFRecordReader(paths[1]).index()
    assert read_record(paths[1], offs[1]) == b"z"
    with pytest.raises(DataError, match="no files match"):
        expand_paths("memory://odkit_test/none-*")


def test_crc_mismatch_truncation_and_skip_corrupt(tmp_path) -> None:
    p = str(tmp_path / "bad.record")
    write_records(p, [b"aaaa", b"bbbb", b"cccc"])
    raw = bytearray(open(p, "rb").read())
    raw[20 + 12] ^= 0xFF  # second record's data (record 0 is 20 bytes)
    open(p, "wb").write(bytes(raw))
    with pytest.raises(DataError, match=r"bad.record:offset 20 \(record 1\): CRC mismatch in record data"):
        list(iter_records(p))
    skipped = []
    assert list(iter_records(p, skip_corrupt=True, on_skip=skipped.append)) == [b"aaaa", b"cccc"]
    assert len(skipped) == 1
    assert list(iter_records(p, verify=False))[1] == b"\x9dbbb"

    t = str(tmp_path / "trunc.record")
    write_records(t, [b"aaaa", b"bbbbbbbb"])
    data = open(t, "rb").read()
    open(t, "wb").write(data[:-6])
    with pytest.raises(DataError, match=r"offset 20 \(record 1\): truncated record"):
        list(iter_records(t))
    with pytest.raises(DataError, match="truncated"):
        TFRecordReader(t).index()
    assert [x[3] for x in iter_records_with_location(t, skip_corrupt=True)] == [b"aaaa"]

    notrec = tmp_path / "x.record"
    notrec.write_bytes(b"this is not a tfrecord file at all")
    with pytest.raises(DataError, match="CRC mismatch in record length"):
        TFRecordReader(str(notrec)).index()


def test_round_trip_property(tmp_path) -> None:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=30, deadline=None)
    @given(st.lists(st.binary(max_size=300), max_size=12), st.integers(1, 4))
    def check(records: list[bytes], shards: int) -> None:
        prefix = str(tmp_path / f"p{len(records)}_{shards}")
        with ShardedWriter(prefix, shards) as w:
            for r in records:
                w.write(r)
        got = [list(iter_records(shard_name(prefix, i, shards))) for i in range(shards)]
        assert got == [records[i::shards] for i in range(shards)]
        for i in range(shards):
            p = shard_name(prefix, i, shards)
            assert [read_record(p, o) for o in TFRecordReader(p).index()] == records[i::shards]

    check()
