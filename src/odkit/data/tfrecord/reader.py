"""Reading TFRecord files: one record walker (``_walk``) with typed errors, an offset index, random access."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Sequence
from typing import IO, Any

from odkit.data.tfrecord.format import _HEADER, _U32, masked_crc32c
from odkit.data.tfrecord.paths import _is_url, expand_paths, open_file
from odkit.errors import DataError


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
