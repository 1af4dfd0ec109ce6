"""Writing TFRecord files atomically: one file (TFRecordWriter) or ``num_shards`` shards (ShardedWriter)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import IO, Any, TypeVar

from odkit.data.tfrecord.format import frame_record, shard_name, shard_pattern
from odkit.data.tfrecord.paths import _is_url
from odkit.errors import DataError
from odkit.fileio import remove_stale_temporaries, temp_name

_Output = TypeVar("_Output", bound="_AllOrNothing")


class _AllOrNothing:
    """An output finished in temporaries (``finish``) and then renamed into place (``publish``): ``commit`` does both;
    as a context manager it commits when the block succeeds and ``abort``s (removes the temporaries) otherwise."""

    def finish(self) -> None:
        raise NotImplementedError

    def publish(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        self.finish()
        self.publish()

    def close(self) -> None:
        self.commit()

    def __enter__(self: _Output) -> _Output:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


class TFRecordWriter(_AllOrNothing):
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

    finish = flush_to_temp

    def abort(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
        self._done = True
        try:
            os.remove(self.tmp_path)
        except FileNotFoundError:
            pass



MAX_OPEN_SHARDS = 64


class ShardedWriter(_AllOrNothing):
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


    def abort(self) -> None:
        for w in self._writers:
            w.abort()
        self._open.clear()



def write_records(path: str, records: Iterable[bytes]) -> int:
    """Write ``records`` to one file atomically; returns the count."""
    with TFRecordWriter(path) as w:
        for r in records:
            w.write(r)
    return w.count
