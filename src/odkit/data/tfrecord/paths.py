"""Input paths: globs, comma lists, folders, fsspec URLs (``gs://``, ``s3://``, ``https://``, ``memory://``)."""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from typing import IO, Any

from odkit.errors import DataError

_GLOB_CHARS = set("*?[")


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
