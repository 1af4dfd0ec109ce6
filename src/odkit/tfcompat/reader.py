"""Read TensorFlow checkpoints (the TensorBundle format) without TensorFlow.

A checkpoint ``PREFIX`` is ``PREFIX.index`` (an SSTable, see :mod:`odkit.tfcompat.sstable`: the empty key
holds a ``BundleHeaderProto``, every other key a ``BundleEntryProto`` saying where the tensor's bytes are)
plus ``PREFIX.data-SSSSS-of-NNNNN`` shards holding the raw little-endian tensor bytes. Each entry carries the
masked CRC32C of its bytes; :meth:`TFCheckpoint.read` verifies it. Tensors are read one at a time with
``seek``/``readinto`` into the returned array's own buffer, so reading a checkpoint never needs more memory
than the tensors the caller keeps.

Object-based (TF2) checkpoints name tensors by their path in the object graph, e.g.
``model/_feature_extractor/.../kernel/.ATTRIBUTES/VARIABLE_VALUE``; :meth:`TFCheckpoint.variables` strips
the ``/.ATTRIBUTES/VARIABLE_VALUE`` suffix and leaves out optimizer slots, ``save_counter`` and the
``_CHECKPOINTABLE_OBJECT_GRAPH`` entry (parsed by :meth:`TFCheckpoint.object_graph`).
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from odkit.errors import OdkitError
from odkit.protos import tf_tensor_bundle_pb2 as tb
from odkit.protos import tf_trackable_object_graph_pb2 as tog
from odkit.tfcompat.sstable import SSTableReader, TableError, crc32c, decode_varint, mask_crc

VARIABLE_SUFFIX = "/.ATTRIBUTES/VARIABLE_VALUE"
OBJECT_GRAPH_KEY = "_CHECKPOINTABLE_OBJECT_GRAPH"
_SLOT_MARK = "/.OPTIMIZER_SLOT/"
_EXCLUDED_NAMES = {"save_counter"}
_EXCLUDED_PREFIXES = ("optimizer/",)
_DATA_FILE_RE = re.compile(r"^(?P<prefix>.+)\.data-\d{5}-of-\d{5}$")

_DTYPES: dict[int, np.dtype] = {
    tb.DT_FLOAT: np.dtype("<f4"),
    tb.DT_DOUBLE: np.dtype("<f8"),
    tb.DT_HALF: np.dtype("<f2"),
    tb.DT_INT8: np.dtype("i1"),
    tb.DT_INT16: np.dtype("<i2"),
    tb.DT_INT32: np.dtype("<i4"),
    tb.DT_INT64: np.dtype("<i8"),
    tb.DT_UINT8: np.dtype("u1"),
    tb.DT_UINT16: np.dtype("<u2"),
    tb.DT_UINT32: np.dtype("<u4"),
    tb.DT_UINT64: np.dtype("<u8"),
    tb.DT_BOOL: np.dtype("?"),
    tb.DT_COMPLEX64: np.dtype("<c8"),
    tb.DT_COMPLEX128: np.dtype("<c16"),
}
# bfloat16 has no numpy dtype: stored as 2 bytes each, returned widened to float32 (exact).
_BF16_STORAGE = np.dtype("<u2")


class TFCheckpointError(OdkitError):
    """A TF checkpoint that cannot be found or read (missing shard, CRC mismatch, truncated, dtype)."""


@dataclass(frozen=True)
class TFVariable:
    """One tensor of a TF checkpoint: ``name`` (object path), bundle ``key``, numpy dtype, shape."""

    name: str
    key: str
    dtype: np.dtype
    shape: tuple[int, ...]


def _dtype_name(dtype: int) -> str:
    try:
        return tb.DataType.Name(dtype)
    except ValueError:
        return f"DataType {dtype}"


class TFCheckpoint:
    """An open TensorBundle checkpoint (see :func:`open_tf_checkpoint`)."""

    def __init__(self, prefix: str | os.PathLike[str]) -> None:
        self.prefix = Path(prefix)
        index_path = Path(f"{self.prefix}.index")
        where = str(index_path)
        try:
            data = index_path.read_bytes()
        except FileNotFoundError:
            raise TFCheckpointError("TF checkpoint index not found", where=where) from None
        except OSError as e:
            raise TFCheckpointError(f"cannot read TF checkpoint index: {e.strerror}", where=where) from None
        self._entries: dict[str, tb.BundleEntryProto] = {}
        header: tb.BundleHeaderProto | None = None
        self._num_slice_entries = 0
        for key_bytes, value in SSTableReader(data, where).items():
            try:
                if key_bytes == b"":
                    header = tb.BundleHeaderProto.FromString(value)
                    continue
                if key_bytes[:1] == b"\x00":
                    # A slice of a partitioned variable (OrderedCode key); its full-tensor entry lists the
                    # slices and read() refuses it by name.
                    self._num_slice_entries += 1
                    continue
                entry = tb.BundleEntryProto.FromString(value)
                key = key_bytes.decode("utf-8")
            except Exception:  # noqa: BLE001 - protobuf DecodeError / UnicodeDecodeError: corrupt entry
                raise TFCheckpointError(
                    f"corrupt entry {key_bytes[:80]!r} in the checkpoint index", where=where
                ) from None
            self._entries[key] = entry
        if header is None:
            raise TFCheckpointError(
                "checkpoint index has no BundleHeaderProto (not a TF2 TensorBundle)", where=where
            )
        if header.endianness != tb.BundleHeaderProto.LITTLE:
            raise TFCheckpointError("big-endian TF checkpoints are not supported", where=where)
        self.num_shards = max(int(header.num_shards), 1)
        self._check_shards()

    # -- files ---------------------------------------------------------------------------------------

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def _check_shards(self) -> None:
        needed: dict[int, int] = {}
        for key, e in self._entries.items():
            if e.slices:
                continue  # the full-tensor entry of a partitioned variable holds no bytes itself
            if not 0 <= e.shard_id < self.num_shards:
                raise TFCheckpointError(
                    f"entry {key!r} points to shard {e.shard_id} of {self.num_shards}",
                    where=f"{self.prefix}.index",
                )
            needed[e.shard_id] = max(needed.get(e.shard_id, 0), int(e.offset) + int(e.size))
        for shard in range(self.num_shards):
            path = self.shard_path(shard)
            if not path.is_file():
                raise TFCheckpointError(
                    f"missing data shard {path.name}",
                    where=str(path.parent),
                    hint="copy every ckpt.data-*-of-* file next to the .index",
                )
            size = path.stat().st_size
            if size < needed.get(shard, 0):
                raise TFCheckpointError(
                    f"truncated data shard: {size} bytes, the index needs {needed[shard]}",
                    where=str(path),
                    hint="re-download or re-copy the checkpoint",
                )

    # -- listing -------------------------------------------------------------------------------------

    def raw_keys(self) -> list[str]:
        """Every bundle key (sorted), the object graph and optimizer slots included."""
        return sorted(self._entries)

    def entry(self, key: str) -> tb.BundleEntryProto:
        try:
            return self._entries[key]
        except KeyError:
            raise TFCheckpointError(f"no tensor {key!r} in the checkpoint", where=str(self.prefix)) from None

    @staticmethod
    def variable_name(key: str) -> str | None:
        """The object path of a model variable key, or None for slots, counters and the object graph."""
        if key == OBJECT_GRAPH_KEY or _SLOT_MARK in key:
            return None
        if key.endswith(VARIABLE_SUFFIX):
            name = key[: -len(VARIABLE_SUFFIX)]
        elif "/.ATTRIBUTES/" in key:
            return None  # other serialized attributes (e.g. JSON configs), not variables
        else:
            name = key  # a name-based (TF1-style) checkpoint key
        if name in _EXCLUDED_NAMES or name.startswith(_EXCLUDED_PREFIXES):
            return None
        return name

    def variables(self) -> dict[str, TFVariable]:
        """Model variables by object path (optimizer slots, save_counter and the object graph left out)."""
        out: dict[str, TFVariable] = {}
        for key in sorted(self._entries):
            name = self.variable_name(key)
            if name is None:
                continue
            e = self._entries[key]
            dtype = np.dtype("float32") if e.dtype == tb.DT_BFLOAT16 else _DTYPES.get(e.dtype)
            if dtype is None:
                dtype = np.dtype(object)  # listed; read() says why it cannot be read
            out[name] = TFVariable(
                name=name, key=key, dtype=dtype, shape=tuple(int(d.size) for d in e.shape.dim)
            )
        return out

    # -- reading -------------------------------------------------------------------------------------

    def _key_for(self, name: str) -> str:
        if name in self._entries:
            return name
        if name + VARIABLE_SUFFIX in self._entries:
            return name + VARIABLE_SUFFIX
        raise TFCheckpointError(f"no variable {name!r} in the checkpoint", where=str(self.prefix))

    def _read_bytes(
        self, key: str, e: tb.BundleEntryProto, into: bytearray | memoryview | None = None
    ) -> memoryview:
        path = self.shard_path(e.shard_id)
        size = int(e.size)
        buf = memoryview(into) if into is not None else memoryview(bytearray(size))
        try:
            with open(path, "rb") as f:
                f.seek(int(e.offset))
                got = f.readinto(buf)
        except FileNotFoundError:
            raise TFCheckpointError(f"missing data shard {path.name}", where=str(path.parent)) from None
        if got != size:
            raise TFCheckpointError(
                f"truncated data shard: tensor {key!r} needs bytes {e.offset}..{int(e.offset) + size}",
                where=str(path),
                hint="re-download or re-copy the checkpoint",
            )
        return buf

    def _check_crc(self, key: str, e: tb.BundleEntryProto, data: memoryview) -> None:
        if mask_crc(crc32c(data)) != e.crc32c:
            raise TFCheckpointError(
                f"CRC mismatch for tensor {key!r} (data file corrupt)",
                where=str(self.shard_path(e.shard_id)),
                hint="re-download or re-copy the checkpoint",
            )

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` (object path or raw bundle key) as a numpy array; CRC32C verified."""
        key = self._key_for(name)
        e = self._entries[key]
        shape = tuple(int(d.size) for d in e.shape.dim)
        if e.slices:
            raise TFCheckpointError(
                f"tensor {key!r} is a partitioned variable (saved in slices), which odkit cannot read",
                where=str(self.prefix),
            )
        if e.dtype == tb.DT_STRING:
            return np.array(self._read_strings(key, e), dtype=object).reshape(shape)
        storage = _BF16_STORAGE if e.dtype == tb.DT_BFLOAT16 else _DTYPES.get(e.dtype)
        if storage is None:
            raise TFCheckpointError(
                f"tensor {key!r} has unsupported dtype {_dtype_name(e.dtype)}", where=str(self.prefix)
            )
        count = int(np.prod(shape, dtype=np.int64))
        if count * storage.itemsize != int(e.size):
            raise TFCheckpointError(
                f"tensor {key!r}: index says {e.size} bytes, shape {list(shape)} x {storage} needs "
                f"{count * storage.itemsize}",
                where=str(self.prefix),
            )
        arr = np.empty(shape, dtype=storage)
        data = self._read_bytes(key, e, into=arr.reshape(-1).view(np.uint8))
        self._check_crc(key, e, data)
        if e.dtype == tb.DT_BFLOAT16:
            return (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(arr.dtype.newbyteorder("="), copy=False)

    def _read_strings(self, key: str, e: tb.BundleEntryProto) -> list[bytes]:
        """A DT_STRING tensor: varint64 lengths, masked CRC32C of the lengths, then the bytes.

        As TF's ``WriteStringTensor``: the checksum covers each length as a little-endian uint32 (uint64
        above 2**32-1), then the stored length checksum, then the string bytes.
        """
        n = int(np.prod([int(d.size) for d in e.shape.dim], dtype=np.int64))
        data = bytes(self._read_bytes(key, e))
        pos = 0
        lengths = []
        try:
            for _ in range(n):
                length, pos = decode_varint(data, pos)
                lengths.append(length)
        except ValueError:
            raise TFCheckpointError(f"corrupt string tensor {key!r}", where=str(self.prefix)) from None
        crc = 0
        for length in lengths:
            crc = crc32c(struct.pack("<I" if length <= 0xFFFFFFFF else "<Q", length), crc)
        stored = data[pos : pos + 4]
        if len(stored) != 4 or struct.unpack("<I", stored)[0] != mask_crc(crc):
            raise TFCheckpointError(
                f"CRC mismatch in the lengths of string tensor {key!r} (data file corrupt)",
                where=str(self.shard_path(e.shard_id)),
            )
        crc = crc32c(stored, crc)
        pos += 4
        out = []
        for length in lengths:
            out.append(data[pos : pos + length])
            pos += length
        if pos != len(data):
            raise TFCheckpointError(
                f"corrupt string tensor {key!r} (length mismatch)", where=str(self.prefix)
            )
        crc = crc32c(data[pos - sum(lengths) : pos], crc)
        if mask_crc(crc) != e.crc32c:
            raise TFCheckpointError(
                f"CRC mismatch for tensor {key!r} (data file corrupt)",
                where=str(self.shard_path(e.shard_id)),
                hint="re-download or re-copy the checkpoint",
            )
        return out

    def object_graph(self) -> tog.TrackableObjectGraph:
        """The parsed ``_CHECKPOINTABLE_OBJECT_GRAPH`` (TF2 object-based checkpoints only)."""
        if OBJECT_GRAPH_KEY not in self._entries:
            raise TFCheckpointError(
                "checkpoint has no object graph (a TF1 name-based checkpoint?)", where=str(self.prefix)
            )
        (blob,) = self._read_strings(OBJECT_GRAPH_KEY, self._entries[OBJECT_GRAPH_KEY])
        graph = tog.TrackableObjectGraph()
        try:
            graph.ParseFromString(blob)
        except Exception:  # noqa: BLE001 - protobuf DecodeError
            raise TFCheckpointError(
                "corrupt object graph in the checkpoint", where=str(self.prefix)
            ) from None
        return graph


def _read_checkpoint_state(path: Path) -> Path:
    """The latest prefix named by a TF ``checkpoint`` text file (model_checkpoint_path)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise TFCheckpointError(f"cannot read checkpoint state file: {e}", where=str(path)) from None
    m = re.search(r'^\s*model_checkpoint_path\s*:\s*"((?:[^"\\]|\\.)*)"', text, re.MULTILINE)
    if not m:
        raise TFCheckpointError("checkpoint state file has no model_checkpoint_path", where=str(path))
    name = m.group(1).encode("utf-8").decode("unicode_escape")
    candidate = Path(name)
    if not candidate.is_absolute():
        candidate = path.parent / candidate
    if not Path(f"{candidate}.index").is_file():
        # TF may write an absolute path from the machine that trained; the files sit next to the state file.
        local = path.parent / Path(name).name
        if Path(f"{local}.index").is_file():
            return local
    return candidate


def resolve_tf_prefix(path: str | os.PathLike[str]) -> Path:
    """The TensorBundle prefix for a prefix, an ``.index``/``.data`` file, a dir with a ``checkpoint``
    state file, a SavedModel dir (``variables/variables``) or a zoo model dir (``checkpoint/``)."""
    p = Path(path)
    if p.is_file():
        if p.name.endswith(".index"):
            return Path(str(p)[: -len(".index")])
        m = _DATA_FILE_RE.match(str(p))
        if m:
            return Path(m.group("prefix"))
        if p.name == "checkpoint":
            return _read_checkpoint_state(p)
    if Path(f"{p}.index").is_file():
        return p
    if p.is_dir():
        if (p / "checkpoint").is_file():
            return _read_checkpoint_state(p / "checkpoint")
        if (p / "variables" / "variables.index").is_file():
            return p / "variables" / "variables"
        if (p / "variables.index").is_file():
            return p / "variables"
        if (p / "checkpoint").is_dir():
            return resolve_tf_prefix(p / "checkpoint")
        raise TFCheckpointError(
            "no TF checkpoint in this folder",
            where=str(p),
            hint="pass a ckpt-N prefix, a folder holding a `checkpoint` file or a SavedModel folder",
        )
    raise TFCheckpointError(
        "TF checkpoint not found",
        where=str(p),
        hint="pass a ckpt-N prefix (without .index), a checkpoint folder or a SavedModel folder",
    )


def open_tf_checkpoint(path: str | os.PathLike[str]) -> TFCheckpoint:
    """Open a TF checkpoint: a ``ckpt-N`` prefix, a dir holding a ``checkpoint`` text file, a SavedModel
    dir (its ``variables/variables``), or a variables prefix. Raises :class:`TFCheckpointError`."""
    prefix = resolve_tf_prefix(path)
    try:
        return TFCheckpoint(prefix)
    except TableError as e:
        raise TFCheckpointError(e.message, where=e.where, hint=e.hint) from None
