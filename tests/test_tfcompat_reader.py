"""odkit.tfcompat reader: TensorBundle checkpoints read without TensorFlow.

`TINY_TGZ` is a checkpoint written by TensorFlow 2.21 itself (`tf.train.Checkpoint(model=m).write(...,
options=CheckpointOptions(experimental_sharding_callback=MaxShardSizePolicy(max_shard_size=48)))`,
3 data shards) holding the variables in `EXPECTED`. Corruption tests damage copies in tmp_path; tables
TF does not write here (snappy blocks, odd dtypes) are built with the small writer below.
"""

from __future__ import annotations

import base64
import io
import shutil
import struct
import tarfile
from pathlib import Path

import numpy as np
import pytest

from odkit.errors import OdkitError
from odkit.protos import tf_tensor_bundle_pb2 as tb
from odkit.tfcompat import TFCheckpointError, open_tf_checkpoint
from odkit.tfcompat.sstable import SSTableReader, TableError, crc32c, mask_crc, snappy_decompress, unmask_crc

TINY_TGZ = "".join(
    [
        "H4sIAAAAAAAAA+2XS08TURTH78y0w2VCKNwuaBDIKA8nJsBMO9NiYvq0QhGFYKkhLur0pYTSmlISZNU9C+M3kBXRhMRPoF2w"
        "cuXSRE3c6MbEhSsSFng6rQRrnHFR2mjuLzmd9ty5/3vm8T83Ta8/Kk96pjJ6WZ+Ua0wWc8YXD2oZNTmvqhpHoPkIgzJSNI/s"
        "8SpuFRaWFY8bhkW5dSX8ma3Nsl4SRVQqFstm51mN/7NUXiMUhEAQlVeNnB8+ApCHqEA8g6hCfAp0slJK60k3+V/piP+V3/3v"
        "pv5vC/5KtRK4XxX9zNnsyckJgxoZIcgi7kJ4942e2n6804kaKedGs//d7fe/4tZ8Z/yvGv5XVOr/9lDb31Fwz/7whaMiOIRu"
        "zBD7RjGTzV9hMSPcEgTMEn49Wypk80IX5giXU7wCj22ETeUgYSfcmlcVMOaJLZfXHwh23EWYDOhgYi/oG9lNyHQTJm3IxUhE"
        "6E2ElmOh8EI0mQgtrEQJTuilNT2Vzw5eNtadri82PRWKx5dj4ZV49M70r1MMqRskaCI1VpeCWq10oiRgojNa10nlWlIO3Ckr"
        "nVkSMtEZb1wW3GgroevEbyJ0qS6UsVKZI2ETlYm6ivGYW1JP2kKl02b572j0/7VCJrt9XmtY9X/Zpzb1f8Une2n/bw885gZr"
        "zhrqS0bmopGbS4ux23HDdYvh+WgknpxdDi3NQVNHLlbE0r5dS8xslNGo8y86I+4lsE9gzsWINonXnh/o3fxQv5nJYdeozWBc"
        "rIS11WufNX7IYdakYHNCoD4MZ394F7nHj/Sbt3zsNPRZFyPZNN/xt5WuEad5M8XC6TUMSpy2tfqU50cGzDs5bHi4dhX1lURB"
        "6tP255NX+YsDlnsbTOppTOUgbJKs9R4mJ3jRadVl4RH9LHRc6tH6Dg6Nf+tGz3wyPPPx9Ef1+95LxHAF9IU7ze3k3/JfOXzE"
        "OazfmLvHld2xrdn35/M+UigUCoVCoVAoFAqFQqFQKBQKpRX8AE7jU0wAKAAA"
    ]
)

EXPECTED = {
    "model/kernel": np.arange(12, dtype=np.float32).reshape(1, 3, 4) * 0.25 - 1,
    "model/f16": np.array([1.5, -2.25], np.float16),
    "model/bf": np.array([1.0, -3.5, 0.15625], np.float32),  # bfloat16 widened exactly
    "model/i64": np.array([[1, -(2**40)]], np.int64),
    "model/flag": np.array([True, False, True]),
    "model/d": np.array(3.25, np.float64),
    "model/names": np.array([b"ab", b"", b"xyz"], dtype=object),
    "model/c": np.array([1 + 2j], np.complex64),
}


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    d = tmp_path / "checkpoint"  # the zoo layout: MODEL/checkpoint/ckpt-N.*
    d.mkdir()
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(TINY_TGZ)), mode="r:gz") as tar:
        tar.extractall(d, filter="data")
    return d / "ckpt-3"


def test_reads_tf_written_sharded_checkpoint(tiny: Path) -> None:
    ckpt = open_tf_checkpoint(tiny)
    assert ckpt.prefix == tiny and ckpt.num_shards == 3
    variables = ckpt.variables()
    assert sorted(variables) == sorted(EXPECTED)
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in ckpt.raw_keys()
    assert {ckpt.entry(v.key).shard_id for v in variables.values()} == {0, 1, 2}
    for name, want in EXPECTED.items():
        got = ckpt.read(name)
        assert variables[name].shape == want.shape == got.shape
        assert got.dtype == want.dtype == variables[name].dtype
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(ckpt.read(variables[name].key), want)  # raw key works too
    got = ckpt.read("model/kernel")
    got[0, 0, 0] = 7.0  # arrays are the caller's own (writable, not views of a shared buffer)
    assert ckpt.read("model/kernel")[0, 0, 0] == -1.0
    graph = ckpt.object_graph()
    root = graph.nodes[0]
    assert [c.local_name for c in root.children] == ["model"]
    model = graph.nodes[root.children[0].node_id]
    assert sorted(c.local_name for c in model.children) == sorted(n.split("/")[1] for n in EXPECTED)
    kernel = graph.nodes[next(c.node_id for c in model.children if c.local_name == "kernel")]
    assert kernel.attributes[0].checkpoint_key == "model/kernel/.ATTRIBUTES/VARIABLE_VALUE"


def test_path_forms(tiny: Path, tmp_path: Path) -> None:
    d = tiny.parent
    assert open_tf_checkpoint(d / "ckpt-3.index").prefix == tiny
    assert open_tf_checkpoint(d / "ckpt-3.data-00001-of-00003").prefix == tiny
    (d / "checkpoint").write_text('model_checkpoint_path: "ckpt-3"\nall_model_checkpoint_paths: "ckpt-3"\n')
    assert open_tf_checkpoint(d).prefix == tiny
    assert open_tf_checkpoint(d / "checkpoint").prefix == tiny
    # an absolute path from the machine that trained: the files next to the state file are used
    (d / "checkpoint").write_text('model_checkpoint_path: "/elsewhere/train/ckpt-3"\n')
    assert open_tf_checkpoint(d).prefix == tiny
    # a zoo model folder (zoo/checkpoint/) and a SavedModel (saved_model/variables/variables.*)
    assert open_tf_checkpoint(tmp_path).prefix == tiny
    sm = tmp_path / "saved_model"
    (sm / "variables").mkdir(parents=True)
    for f in d.glob("ckpt-3.*"):
        shutil.copy(f, sm / "variables" / f.name.replace("ckpt-3", "variables"))
    (sm / "saved_model.pb").write_bytes(b"")
    ckpt = open_tf_checkpoint(sm)
    assert ckpt.prefix == sm / "variables" / "variables"
    np.testing.assert_array_equal(ckpt.read("model/i64"), EXPECTED["model/i64"])


def _one_line(err: pytest.ExceptionInfo[OdkitError]) -> str:
    text = str(err.value)
    assert "\n" not in text and isinstance(err.value, TFCheckpointError)
    return text


def test_missing_paths(tmp_path: Path) -> None:
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(tmp_path / "nope" / "ckpt-1")
    assert "TF checkpoint not found" in _one_line(err)
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(tmp_path)
    assert "no TF checkpoint in this folder" in _one_line(err)


def test_missing_shard(tiny: Path) -> None:
    Path(f"{tiny}.data-00001-of-00003").unlink()
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(tiny)
    assert "missing data shard ckpt-3.data-00001-of-00003" in _one_line(err)


def test_crc_mismatch(tiny: Path) -> None:
    ckpt = open_tf_checkpoint(tiny)
    entry = ckpt.entry(ckpt.variables()["model/kernel"].key)
    shard = ckpt.shard_path(entry.shard_id)
    data = bytearray(shard.read_bytes())
    data[entry.offset + 5] ^= 0x40
    shard.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError) as err:
        ckpt.read("model/kernel")
    assert "CRC mismatch for tensor 'model/kernel/.ATTRIBUTES/VARIABLE_VALUE'" in _one_line(err)
    ckpt.read("model/f16")  # the other tensors still read


def test_crc_mismatch_in_string_tensor(tiny: Path) -> None:
    ckpt = open_tf_checkpoint(tiny)
    entry = ckpt.entry(ckpt.variables()["model/names"].key)
    shard = ckpt.shard_path(entry.shard_id)
    data = bytearray(shard.read_bytes())
    data[entry.offset + entry.size - 1] ^= 0x01  # last byte of "xyz"
    shard.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError) as err:
        ckpt.read("model/names")
    assert "CRC mismatch" in _one_line(err)


def test_truncated_data_shard(tiny: Path) -> None:
    shard = Path(f"{tiny}.data-00002-of-00003")
    shard.write_bytes(shard.read_bytes()[:-10])
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(tiny)
    assert "truncated data shard" in _one_line(err)


def test_truncated_file_after_open(tiny: Path) -> None:
    ckpt = open_tf_checkpoint(tiny)
    shard = Path(f"{tiny}.data-00002-of-00003")
    shard.write_bytes(b"")
    name = next(n for n, v in ckpt.variables().items() if ckpt.entry(v.key).shard_id == 2)
    with pytest.raises(TFCheckpointError) as err:
        ckpt.read(name)
    assert "truncated data shard" in _one_line(err)


def test_truncated_index(tiny: Path) -> None:
    index = Path(f"{tiny}.index")
    data = index.read_bytes()
    for cut in (10, len(data) - 20):
        index.write_bytes(data[:cut])
        with pytest.raises(TFCheckpointError) as err:
            open_tf_checkpoint(tiny)
        assert "truncated" in _one_line(err)


def test_corrupt_index_block(tiny: Path) -> None:
    index = Path(f"{tiny}.index")
    data = bytearray(index.read_bytes())
    data[40] ^= 0x10
    index.write_bytes(bytes(data))
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(tiny)
    assert "CRC mismatch in index block" in _one_line(err)


# -- a minimal table writer (LevelDB format) for what the TF-written sample does not cover -------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block(entries: list[tuple[bytes, bytes]], restart_interval: int = 2) -> bytes:
    out = bytearray()
    restarts = []
    prev = b""
    for i, (k, v) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(k), len(prev)) and k[shared] == prev[shared]:
                shared += 1
        out += _varint(shared) + _varint(len(k) - shared) + _varint(len(v)) + k[shared:] + v
        prev = k
    for r in restarts:
        out += struct.pack("<I", r)
    return bytes(out + struct.pack("<I", len(restarts)))


def _snappy(data: bytes) -> bytes:
    """A valid snappy stream: literals of at most 256 bytes (tag 60 + 1 length byte), and a copy
    op (1-byte offset) wherever the next 4 bytes repeat the previous 4."""
    out = bytearray(_varint(len(data)))
    pos = 0
    while pos < len(data):
        if pos >= 4 and data[pos : pos + 4] == data[pos - 4 : pos]:
            out += bytes([0b01, 4])  # copy: length 4, offset 4
            pos += 4
            continue
        chunk = data[pos : pos + 4] if pos + 8 <= len(data) else data[pos : pos + 256]
        out += bytes([60 << 2, len(chunk) - 1]) + chunk
        pos += len(chunk)
    return bytes(out)


def _write_table(path: Path, entries: list[tuple[bytes, bytes]], *, snappy: bool = False) -> None:
    out = bytearray()
    handles = []
    for chunk in (entries[:2], entries[2:]):  # two data blocks
        if not chunk:
            continue
        raw = _block(chunk)
        payload, ctype = (_snappy(raw), 1) if snappy else (raw, 0)
        off = len(out)
        out += payload + bytes([ctype]) + struct.pack("<I", mask_crc(crc32c(payload + bytes([ctype]))))
        handles.append((chunk[-1][0], _varint(off) + _varint(len(payload))))
    index = _block(handles)
    index_off = len(out)
    out += index + b"\0" + struct.pack("<I", mask_crc(crc32c(index + b"\0")))
    footer = _varint(0) + _varint(0) + _varint(index_off) + _varint(len(index))
    out += footer.ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
    path.write_bytes(bytes(out))


def _bundle(tmp_path: Path, tensors: dict[str, tuple[int, np.ndarray]]) -> Path:
    prefix = tmp_path / "ckpt-7"
    data = bytearray()
    entries = [(b"", tb.BundleHeaderProto(num_shards=1).SerializeToString())]
    for name, (dtype, arr) in sorted(tensors.items()):
        raw = arr.tobytes()
        e = tb.BundleEntryProto(dtype=dtype, offset=len(data), size=len(raw), crc32c=mask_crc(crc32c(raw)))
        e.shape.dim.extend(tb.TensorShapeProto.Dim(size=s) for s in arr.shape)
        entries.append((f"{name}/.ATTRIBUTES/VARIABLE_VALUE".encode(), e.SerializeToString()))
        data += raw
    _write_table(Path(f"{prefix}.index"), entries)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(bytes(data))
    return prefix


def test_unsupported_dtype(tmp_path: Path) -> None:
    prefix = _bundle(
        tmp_path,
        {
            "model/a": (tb.DT_FLOAT, np.ones((2, 2), np.float32)),
            "model/handle": (tb.DT_RESOURCE, np.zeros(4, np.uint8)),
            "model/q": (tb.DT_QINT8, np.zeros(3, np.int8)),
            "optimizer/iter": (tb.DT_INT64, np.zeros((), np.int64)),
            "model/a/.OPTIMIZER_SLOT/optimizer/m": (tb.DT_FLOAT, np.ones((2, 2), np.float32)),
            "save_counter": (tb.DT_INT64, np.ones((), np.int64)),
        },
    )
    ckpt = open_tf_checkpoint(prefix)
    assert sorted(ckpt.variables()) == [
        "model/a",
        "model/handle",
        "model/q",
    ]  # slots/optimizer/counter left out
    np.testing.assert_array_equal(ckpt.read("model/a"), np.ones((2, 2), np.float32))
    for name, dtype in (("model/handle", "DT_RESOURCE"), ("model/q", "DT_QINT8")):
        with pytest.raises(TFCheckpointError) as err:
            ckpt.read(name)
        assert f"unsupported dtype {dtype}" in _one_line(err)
    with pytest.raises(TFCheckpointError) as err:
        ckpt.read("model/nothing")
    assert "no variable 'model/nothing'" in _one_line(err)


def test_size_shape_mismatch(tmp_path: Path) -> None:
    prefix = _bundle(tmp_path, {"model/a": (tb.DT_INT32, np.ones(3, np.float32))})  # 12 bytes: int32 x3 ok
    assert open_tf_checkpoint(prefix).read("model/a").dtype == np.int32
    prefix = _bundle(tmp_path, {"model/a": (tb.DT_INT64, np.ones(3, np.float32))})  # 12 bytes != 24
    with pytest.raises(TFCheckpointError) as err:
        open_tf_checkpoint(prefix).read("model/a")
    assert "index says 12 bytes" in _one_line(err)


def test_snappy_blocks_and_restarts(tmp_path: Path) -> None:
    entries = [(f"key{i:03d}".encode(), f"value-{i}".encode() * (i + 1)) for i in range(7)]
    path = tmp_path / "t.index"
    _write_table(path, entries)
    assert list(SSTableReader(path.read_bytes(), "t").items()) == entries
    plain = path.read_bytes()
    _write_table(path, entries, snappy=True)
    assert b"value-6value-6" in plain and b"value-6value-6" not in path.read_bytes()  # really compressed
    assert list(SSTableReader(path.read_bytes(), "t").items()) == entries
    assert snappy_decompress(_snappy(b"abcdabcdabcdxyz")) == b"abcdabcdabcdxyz"
    with pytest.raises(ValueError):
        snappy_decompress(_varint(9) + bytes([0b01, 9]))  # copy before any output
    assert unmask_crc(mask_crc(0x12345678)) == 0x12345678
    with pytest.raises(TableError):
        SSTableReader(b"x" * 60, "t")
