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

import glob
import io
import os
import struct
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

import crc32c as _crc32c

from odkit.errors import DataError
from odkit.fileio import remove_stale_temporaries, temp_name

_MASK_DELTA = 0xA282EAD8
_HEADER = struct.Struct("<QI")
_U32 = struct.Struct("<I")
_GLOB_CHARS = set("*?[")


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


# ----------------------------------------------------------------------------------------------------------
# Paths


def _is_url(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _strip_file_scheme(path: str) -> str:
    return path[len("file://") :] if path.startswith("file://") else path


def _fsspec() -> Any:
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec is a dev dependency
        raise DataError("remote paths need fsspec", hint="pip install 'odkit[remote]'") from exc
    return fsspec


def _record_like(names: list[str]) -> list[str]:
    """In a folder: the files that look like TFRecords (``.record`` / ``.tfrecord`` in the name) if any."""
    rec = [n for n in names if ".record" in os.path.basename(n) or ".tfrecord" in os.path.basename(n)]
    return rec or names


def _expand_one(pattern: str) -> list[str]:
    pattern = _strip_file_scheme(pattern.strip())
    if not pattern:
        return []
    if _is_url(pattern):
        fsspec = _fsspec()
        fs, _, _ = fsspec.core.get_fs_token_paths(pattern)
        protocol = pattern.split("://", 1)[0]
        if any(c in pattern for c in _GLOB_CHARS):
            found = sorted(fs.glob(pattern))
        elif fs.isdir(pattern):
            found = _record_like(sorted(p for p in fs.ls(pattern, detail=False) if fs.isfile(p)))
        elif fs.exists(pattern):
            found = [pattern]
        else:
            found = []
        del protocol
        return [p if "://" in p else fs.unstrip_protocol(p) for p in found]
    pattern = os.path.expanduser(pattern)
    if os.path.isdir(pattern):
        files = sorted(
            n for n in os.listdir(pattern) if not n.startswith(".") and os.path.isfile(os.path.join(pattern, n))
        )
        return [os.path.join(pattern, n) for n in _record_like(files)]
    if any(c in pattern for c in _GLOB_CHARS):
        return sorted(p for p in glob.glob(pattern) if os.path.isfile(p))
    return [pattern] if os.path.isfile(pattern) else []


def expand_paths(spec: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Expand globs (``?????``, ``*``), comma lists, directories, or a list of those, into files.

    Order is kept (each pattern's matches sorted); duplicates are dropped. A pattern matching nothing
    raises DataError naming it.
    """
    specs: list[str] = [os.fspath(spec)] if isinstance(spec, (str, os.PathLike)) else [os.fspath(s) for s in spec]
    out: list[str] = []
    seen: set[str] = set()
    for s in specs:
        for pattern in s.split(","):
            if not pattern.strip():
                continue
            matches = _expand_one(pattern)
            if not matches:
                raise DataError(
                    f"no files match input path {pattern.strip()!r}",
                    hint="check the path or glob; shards look like NAME-?????-of-000NN",
                )
            for m in matches:
                if m not in seen:
                    seen.add(m)
                    out.append(m)
    if not out:
        raise DataError(f"no input paths given ({spec!r})")
    return out


def open_file(path: str, mode: str = "rb") -> IO[bytes]:
    """Open a local path or an fsspec URL."""
    path = _strip_file_scheme(path)
    if _is_url(path):
        return _fsspec().open(path, mode).open()
    try:
        return open(path, mode)  # noqa: SIM115
    except FileNotFoundError as exc:
        raise DataError("file not found", where=path) from exc
    except IsADirectoryError as exc:
        raise DataError("is a directory, expected a TFRecord file", where=path) from exc


# ----------------------------------------------------------------------------------------------------------
# Reading


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) == n:
        return data
    chunks = [data]
    got = len(data)
    while got < n:
        more = f.read(n - got)
        if not more:
            break
        chunks.append(more)
        got += len(more)
    return b"".join(chunks)


MAX_RECORD_BYTES = 1 << 34  # 16 GiB: a larger declared length is corruption, whatever the file size


def _bytes_left(f: IO[bytes]) -> int | None:
    """Bytes from the current position to the end of ``f`` (None when the size is unknown)."""
    try:
        size = os.fstat(f.fileno()).st_size
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        size = getattr(f, "size", None)
        if not isinstance(size, int):
            return None
    return size - f.tell()


class RecordError(DataError):
    """A record that cannot be read (``where`` names the file, offset and record number)."""


class TruncatedRecord(RecordError):
    """The file ends inside the record (or its declared length is impossible): nothing after it can be read."""


class CorruptRecordLength(RecordError):
    """The length's CRC does not match: corrupt, or not a TFRecord file; nothing after it can be located."""


class CorruptRecordData(RecordError):
    """The data's CRC does not match; the length was checked, so reading can go on at ``next_offset``."""

    def __init__(self, message: str, *, next_offset: int, where: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, where=where, hint=hint)
        self.next_offset = next_offset


def _read_at(f: IO[bytes], path: str, offset: int, verify: bool, record_no: int | None = None, *,
             size: int | None = None, read_data: bool = True) -> tuple[bytes | None, int]:
    """Read the record at ``offset`` (file positioned there; ``size``: the file's, when known). Returns (data, next
    offset); data is None with ``read_data=False`` (the header alone is read and checked)."""
    where = f"{os.path.basename(path)}:offset {offset}" + (f" (record {record_no})" if record_no is not None else "")
    header = _read_exact(f, 12)
    if len(header) < 12:
        raise TruncatedRecord("truncated record header", where=where, hint="the file is cut short; re-create it")
    length, length_crc = _HEADER.unpack(header)
    if verify and masked_crc32c(header[:8]) != length_crc:
        raise CorruptRecordLength("CRC mismatch in record length (corrupt or not a TFRecord file)", where=where)
    left = size - offset - 12 if size is not None else _bytes_left(f)
    if (left is not None and length + 4 > left) or length > MAX_RECORD_BYTES:
        raise TruncatedRecord(f"truncated record (header says {length} bytes of data, "
                              f"{'at most ' + str(MAX_RECORD_BYTES) + ' allowed' if left is None else str(left) + ' left'})",
                              where=where, hint="the file is cut short or corrupt; re-create it")
    next_offset = offset + 16 + length
    if not read_data:
        return None, next_offset
    data = _read_exact(f, length)
    footer = _read_exact(f, 4)
    if len(data) < length or len(footer) < 4:
        raise TruncatedRecord(f"truncated record (expected {length} bytes of data)", where=where)
    if verify and masked_crc32c(data) != _U32.unpack(footer)[0]:
        raise CorruptRecordData("CRC mismatch in record data (corrupt file)", where=where, next_offset=next_offset,
                                hint="re-create the file or pass --skip_corrupt")
    return data, next_offset


def _walk(path: str, verify: bool, *, read_data: bool = True, skip_corrupt: bool = False,
          on_skip: Any = None) -> Iterator[tuple[int, int, bytes | None]]:
    """(index in file, offset, data) of every record of one file: the one loop over a file's records.

    With ``skip_corrupt``: a CorruptRecordData is skipped and reading goes on at the next record; any other
    RecordError (a bad length or a cut file) ends this file. ``on_skip(error)`` is called for each skip.
    """
    with open_file(path) as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        offset = 0
        n = 0
        while offset < size:
            f.seek(offset)
            try:
                data, next_offset = _read_at(f, path, offset, verify, n, size=size, read_data=read_data)
            except RecordError as exc:
                if not skip_corrupt:
                    raise
                if on_skip is not None:
                    on_skip(exc)
                if not isinstance(exc, CorruptRecordData):
                    return
                offset, n = exc.next_offset, n + 1
                continue
            yield n, offset, data
            offset, n = next_offset, n + 1


_INDEX_CACHE: dict[tuple[str, int, int, int], list[int]] = {}
_INDEX_LOCK = threading.Lock()


def _stat_key(path: str) -> tuple[str, int, int, int] | None:
    if _is_url(path):
        return None
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns, st.st_ino)


class TFRecordReader:
    """One TFRecord file: iterate records, build an offset index, read a record by offset."""

    def __init__(self, path: str | os.PathLike[str], verify: bool = True) -> None:
        self.path = os.fspath(path)
        self.verify = verify

    def __iter__(self) -> Iterator[bytes]:
        for _n, _offset, data in _walk(self.path, self.verify):
            yield data  # type: ignore[misc]

    def index(self) -> list[int]:
        """Byte offsets of every record (one sequential scan of headers; cached per file, size, mtime and inode).

        Length CRCs are checked; data CRCs are checked when each record is read.
        """
        key = _stat_key(self.path)
        if key is not None:
            with _INDEX_LOCK:
                cached = _INDEX_CACHE.get(key)
            if cached is not None:
                return list(cached)
        offsets = [offset for _n, offset, _data in _walk(self.path, self.verify, read_data=False)]
        if key is not None:
            with _INDEX_LOCK:
                _INDEX_CACHE[key] = list(offsets)
        return offsets

    def __len__(self) -> int:
        return len(self.index())

    def read(self, offset: int) -> bytes:
        return read_record(self.path, offset, verify=self.verify)


_HANDLES: dict[tuple[int, int, str], IO[bytes]] = {}


def _stale(f: IO[bytes], path: str) -> bool:
    """True if ``path`` was replaced since ``f`` was opened (local files)."""
    if _is_url(path):
        return False
    try:
        return os.fstat(f.fileno()).st_ino != os.stat(path).st_ino
    except OSError:
        return True


def _handle(path: str) -> IO[bytes]:
    """A cached open handle per (process, thread, path), reopened when the file was replaced."""
    key = (os.getpid(), threading.get_ident(), path)
    f = _HANDLES.get(key)
    if f is not None and not f.closed and _stale(f, path):
        f.close()
    if f is None or f.closed:
        if len(_HANDLES) > 256:
            for h in list(_HANDLES.values()):
                h.close()
            _HANDLES.clear()
        f = open_file(path)
        _HANDLES[key] = f
    return f


def read_record(path: str | os.PathLike[str], offset: int, verify: bool = True) -> bytes:
    """The data of the record starting at byte ``offset`` of ``path`` (from ``TFRecordReader.index()``)."""
    path = os.fspath(path)
    f = _handle(path)
    f.seek(offset)
    return _read_at(f, path, offset, verify)[0]


def iter_records(
    paths: str | Sequence[str],
    verify: bool = True,
    skip_corrupt: bool = False,
    on_skip: Any = None,
) -> Iterator[bytes]:
    """Records of all files in order. ``paths`` is anything ``expand_paths`` accepts.

    ``skip_corrupt`` / ``on_skip``: see ``iter_records_with_location``.
    """
    for _path, _n, _offset, data in iter_records_with_location(paths, verify, skip_corrupt, on_skip):
        yield data


def iter_records_with_location(
    paths: str | Sequence[str], verify: bool = True, skip_corrupt: bool = False, on_skip: Any = None,
) -> Iterator[tuple[str, int, int, bytes]]:
    """(path, index in file, offset, data) for every record.

    With ``skip_corrupt``: a record whose data CRC fails is skipped and reading goes on with the next one
    (its length is trustworthy); a bad or truncated header skips the rest of that file. ``on_skip(error)``
    is called for each skip.
    """
    for path in expand_paths(paths):
        for n, offset, data in _walk(path, verify, skip_corrupt=skip_corrupt, on_skip=on_skip):
            yield path, n, offset, data  # type: ignore[misc]


# ----------------------------------------------------------------------------------------------------------
# Writing


class TFRecordWriter:
    """Write records to ``path`` atomically: data goes to a temporary name, renamed by ``close()``.

    Used as a context manager, an exception discards the temporary file and leaves ``path`` untouched.
    The temporary is ``.NAME.tmp-PID`` (odkit.fileio), so a later run removes it if this process is killed.
    ``suspend()`` closes the handle without finishing (reopened for appending on the next write).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        if _is_url(self.path):
            raise DataError("writing TFRecords to remote URLs is not supported", where=self.path,
                            hint="write locally, then copy")
        if os.path.isdir(self.path):
            raise DataError("is a folder, expected a file path for the records", where=self.path)
        parent = os.path.dirname(os.path.abspath(self.path))
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise DataError(f"cannot create the output folder ({exc.strerror or exc})", where=parent) from None
        self.tmp_path = os.fspath(temp_name(os.path.abspath(self.path)))
        self._f: IO[bytes] | None = None
        self._started = False
        self._done = False
        self.count = 0
        self._open()

    def _open(self) -> IO[bytes]:
        if self._f is None:
            try:
                self._f = open(self.tmp_path, "ab" if self._started else "wb")  # noqa: SIM115
            except OSError as exc:
                raise DataError(f"cannot write ({exc.strerror or exc})", where=self.path) from None
            self._started = True
        return self._f

    def suspend(self) -> None:
        """Close the handle (data kept in the temporary file); the next write reopens it."""
        if self._f is not None:
            self._f.close()
            self._f = None

    @property
    def is_open(self) -> bool:
        return self._f is not None

    def write(self, data: bytes) -> None:
        if self._done:
            raise ValueError("writer is closed")
        self._open().write(frame_record(bytes(data)))
        self.count += 1

    def flush_to_temp(self) -> None:
        """Finish the temporary file without renaming it (for an all-or-nothing commit of several files)."""
        f = self._open() if not self._done else None
        if f is not None:
            f.flush()
            os.fsync(f.fileno())
            f.close()
            self._f = None
        self._done = True

    def publish(self) -> None:
        """Rename the finished temporary file into place."""
        if os.path.exists(self.tmp_path):
            os.replace(self.tmp_path, self.path)

    def commit(self) -> None:
        self.flush_to_temp()
        self.publish()

    close = commit

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._done = True
        try:
            os.remove(self.tmp_path)
        except FileNotFoundError:
            pass

    def __enter__(self) -> TFRecordWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


MAX_OPEN_SHARDS = 64


class ShardedWriter:
    """``num_shards`` writers ``prefix-0000i-of-0000N``; all renamed into place only on success.

    ``write(data)`` sends the i-th call to shard ``i % num_shards``; ``write(data, index=k)`` sends it to
    shard ``k % num_shards`` (the TF OD API converters use the example's position in the input list,
    counting examples they skip). At most ``MAX_OPEN_SHARDS`` files are open at once, so any shard count
    works within the open-files limit. ``finish()`` + ``publish()`` split ``commit()`` for callers that
    commit several outputs together.
    """

    def __init__(self, output_prefix: str | os.PathLike[str], num_shards: int) -> None:
        if num_shards < 1:
            raise DataError(f"num_shards must be >= 1, got {num_shards}")
        self.prefix = os.fspath(output_prefix)
        self.num_shards = num_shards
        self.paths = [shard_name(self.prefix, i, num_shards) for i in range(num_shards)]
        self._writers: list[TFRecordWriter] = []
        self._open: list[int] = []
        remove_stale_temporaries(os.path.dirname(os.path.abspath(self.prefix)))
        try:
            for i, p in enumerate(self.paths):
                self._writers.append(TFRecordWriter(p))
                self._note_open(i)
        except BaseException:
            self.abort()
            raise
        self._next = 0
        self.counts = [0] * num_shards

    def _note_open(self, shard: int) -> None:
        if shard in self._open:
            self._open.remove(shard)
        self._open.append(shard)
        while len(self._open) > MAX_OPEN_SHARDS:
            self._writers[self._open.pop(0)].suspend()

    @property
    def pattern(self) -> str:
        return shard_pattern(self.prefix, self.num_shards)

    @property
    def count(self) -> int:
        return sum(self.counts)

    def write(self, data: bytes, index: int | None = None) -> int:
        """Write one record; returns the shard it went to."""
        if index is None:
            index = self._next
            self._next += 1
        shard = index % self.num_shards
        self._writers[shard].write(data)
        self._note_open(shard)
        self.counts[shard] += 1
        return shard

    def finish(self) -> None:
        """All shards complete in their temporary files (nothing visible yet)."""
        try:
            for w in self._writers:
                w.flush_to_temp()
        except BaseException:
            self.abort()
            raise
        self._open.clear()

    def publish(self) -> None:
        for w in self._writers:
            w.publish()

    def commit(self) -> None:
        self.finish()
        self.publish()

    close = commit

    def abort(self) -> None:
        for w in self._writers:
            w.abort()
        self._open.clear()

    def __enter__(self) -> ShardedWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Write ``records`` to one file atomically; returns the count."""
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return w.count
