"""File-system safety, written once: confined reads, atomic outputs, output-path checks, stale temporaries.

* :func:`safe_path` — every reader of a file *named by user data* (an annotation's ``<filename>``, a
  ``trainval.txt`` line, ``export_info.json``'s ``file``) resolves it through this: the result must stay
  inside ``root`` after resolving ``..`` and symlinks, or a one-line :class:`DataError` says so.
* :func:`atomic_write` / :func:`atomic_write_bytes` / :func:`atomic_write_text` — a file appears complete
  or not at all: the data goes to ``.NAME.tmp-PID`` in the same folder, is fsynced and renamed.
* :func:`atomic_dir` — the same for a folder of outputs (``.NAME.tmp-PID/``, renamed into place at the end).
* :func:`remove_stale_temporaries` — temporaries are named with the writer's PID, so a later run removes
  those left by a process that no longer exists (kill -9), and never those of a live one.
* :func:`check_output_dir` / :func:`check_output_file` — an output path that is a file, lies under a file,
  is a folder where a file is expected, or is not writable gives one line naming the flag, before any work.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from odkit.errors import DataError, OdkitError

TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)(?P<suffix>\.[A-Za-z0-9]+)?$")


# ----------------------------------------------------------------------------------------------------------
# Confined reads


def safe_path(root: str | os.PathLike[str], name: str | os.PathLike[str], *, what: str = "file",
              where: str | None = None, hint: str | None = None) -> Path:
    """``root/name``, refusing a name that is absolute, escapes ``root`` with ``..`` or through a symlink.

    Symlinks are allowed when their target stays inside ``root``. The returned path is ``root/name``
    (not resolved), so messages keep the user's spelling. Existence is not checked.
    """
    text = os.fspath(name)
    if not text.strip() or "\x00" in text:
        raise DataError(f"empty or invalid {what} name {text!r}", where=where)
    if os.path.isabs(text) or text.startswith(("/", "\\")) or (len(text) > 1 and text[1] == ":"):
        raise DataError(f"{what} name {text!r} is an absolute path; it must be relative to {os.fspath(root)}",
                        where=where, hint=hint)
    root_real = os.path.realpath(os.fspath(root))
    full = os.path.realpath(os.path.join(root_real, text))
    if os.path.commonpath([root_real, full]) != root_real:
        raise DataError(f"{what} name {text!r} escapes the data folder {os.fspath(root)} (via '..' or a symlink)",
                        where=where, hint=hint or f"{what}s must stay inside that folder")
    return Path(os.fspath(root)) / text


# ----------------------------------------------------------------------------------------------------------
# Atomic outputs


def temp_name(path: str | os.PathLike[str], suffix: str = "") -> Path:
    """``dir/.NAME.tmp-PID[suffix]`` next to ``path`` (``suffix`` e.g. ``.png`` for writers that need one)."""
    p = Path(path)
    return p.with_name(f".{p.name}.tmp-{os.getpid()}{suffix}")


def fsync_dir(folder: Path) -> None:
    """fsync a folder so a rename inside it is durable (best effort: some filesystems refuse)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        pass


def _write_error(path: Path, exc: OSError) -> OdkitError:
    return OdkitError(f"cannot write: {exc.strerror or exc}", where=str(path),
                      hint="check that the folder exists, is a folder and is writable")


@contextlib.contextmanager
def _replace_when_done(tmp: Path, path: Path) -> Iterator[None]:
    """The block writes ``tmp``; then ``tmp`` is renamed to ``path``. On any failure ``tmp`` is removed (an OSError
    becomes one line naming ``path``)."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise _write_error(path, exc) from None
        raise


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb", *, suffix: str = "",
                 encoding: str | None = None) -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync and rename it to ``path``, else remove it.

    The parent folder is created. OSErrors (unwritable, a file where a folder should be, ...) become one
    line naming ``path``.
    """
    p = Path(path)
    if p.is_dir():
        raise OdkitError("is a folder, expected a file path", where=str(p))
    tmp = temp_name(p, suffix)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        f = open(tmp, mode, encoding=encoding if "b" not in mode else None)  # noqa: SIM115
    except OSError as exc:
        raise _write_error(p, exc) from None
    with _replace_when_done(tmp, p), f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(p.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def atomic_save(path: str | os.PathLike[str], save: Any, *, suffix: str | None = None) -> None:
    """``save(tmp_path)`` for writers that want a path (matplotlib, Pillow); then the atomic rename."""
    p = Path(path)
    tmp = temp_name(p, p.suffix if suffix is None else suffix)
    with _replace_when_done(tmp, p):
        p.parent.mkdir(parents=True, exist_ok=True)
        save(tmp)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a fresh temporary folder ``.NAME.tmp-PID`` next to ``path``; on success it becomes ``path``.

    An existing ``path`` is replaced only when ``replace`` (moved aside first, removed after the rename);
    on failure the temporary folder is removed and ``path`` is untouched.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OdkitError("exists and is not a folder", where=str(p))
    if p.exists() and not replace:
        raise OdkitError("already exists", where=str(p), hint="choose a new folder or remove it")
    tmp = temp_name(p)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(p.parent)
        _remove(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise _write_error(p, exc) from None
    try:
        yield tmp
        old = None
        if p.exists():
            old = p.with_name(f".{p.name}.old.tmp-{os.getpid()}")
            _remove(old)
            os.replace(p, old)
        os.replace(tmp, p)
        if old is not None:
            _remove(old)
    except BaseException as exc:
        _remove(tmp)
        if isinstance(exc, OSError):
            raise _write_error(p, exc) from None
        raise
    fsync_dir(p.parent)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove ``.NAME.tmp-PID[.ext]`` files / folders in ``folder`` whose process is gone; returns them."""
    removed: list[Path] = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for n in names:
        m = TMP_RE.match(n)
        if m is None or _pid_alive(int(m.group("pid"))):
            continue
        p = Path(folder) / n
        _remove(p)
        removed.append(p)
    return removed


@contextlib.contextmanager
def removing_created_dirs(*paths: str | os.PathLike[str] | None) -> Iterator[None]:
    """If the block fails, remove the folders among ``paths`` and their parents that did not exist before it
    (only when empty: what a failed command created and left empty), so a failed command leaves nothing."""
    missing: list[Path] = []
    for path in paths:
        if path is None or not os.fspath(path).strip():
            continue
        p = Path(os.path.abspath(os.fspath(path)))
        for q in [p, *p.parents]:
            if q.exists() or q.is_symlink():
                break
            missing.append(q)
    try:
        yield
    except BaseException:
        for q in sorted(set(missing), key=lambda x: len(x.parts), reverse=True):
            with contextlib.suppress(OSError):
                q.rmdir()
        raise


def list_entries(folder: str | os.PathLike[str]) -> set[str] | None:
    """Names in ``folder`` (None when it does not exist), to compare with after a run (remove_new_entries)."""
    try:
        return set(os.listdir(folder))
    except FileNotFoundError:
        return None
    except OSError:
        return set()


def remove_new_entries(folder: str | os.PathLike[str], before: set[str] | None) -> None:
    """Remove what a failed run created in ``folder`` since ``before = list_entries(folder)`` (and the folder
    itself if the run created it)."""
    folder = Path(folder)
    for name in (list_entries(folder) or set()) - (before or set()):
        p = folder / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                p.unlink()
    if before is None:
        with contextlib.suppress(OSError):
            folder.rmdir()


# ----------------------------------------------------------------------------------------------------------
# Output-path checks (before any work is done)


def _first_existing_parent(p: Path) -> Path:
    q = p
    while not q.exists():
        if q.parent == q:
            break
        q = q.parent
    return q


def check_output_dir(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` must be a folder or creatable as one, and writable. Returns it as a Path."""
    p = Path(os.fspath(path))
    if not os.fspath(path).strip():
        raise OdkitError(f"{flag} is empty")
    if p.exists() and not p.is_dir():
        raise OdkitError(f"{flag} {p} is a file, expected a folder", hint="choose a folder path")
    base = _first_existing_parent(p)
    if not base.is_dir():
        raise OdkitError(f"{flag} {p} lies under {base}, which is a file", hint="choose a folder path")
    if not os.access(base, os.W_OK | os.X_OK) or str(base.resolve()).startswith(("/proc", "/sys")):
        raise OdkitError(f"{flag} {p}: {base} is not writable", hint="choose a writable folder")
    return p


def check_output_file(path: str | os.PathLike[str], flag: str) -> Path:
    """``path`` must be a file path (not an existing folder) whose folder exists or can be created."""
    text = os.fspath(path)
    p = Path(text)
    if not text.strip():
        raise OdkitError(f"{flag} is empty")
    if p.is_dir() or text.endswith(("/", os.sep)):
        raise OdkitError(f"{flag} {p} is a folder, expected a file path", hint="add a file name")
    base = _first_existing_parent(p.parent if str(p.parent) else Path("."))
    if not base.is_dir():
        raise OdkitError(f"{flag} {p} lies under {base}, which is a file", hint="choose another path")
    if not os.access(base, os.W_OK | os.X_OK) or str(base.resolve()).startswith(("/proc", "/sys")):
        raise OdkitError(f"{flag} {p}: {base} is not writable", hint="choose a writable folder")
    return p
