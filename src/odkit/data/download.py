"""``odkit download pets``: fetch, verify, resume and safely extract the Oxford-IIIT Pet archives.

* Downloads go to ``DEST/<name>.part`` and resume with an HTTP ``Range`` request when that file exists
  (a server that ignores Range restarts the file). The finished file is renamed to ``DEST/<name>``.
* Verification: from the official site, the MD5 (torchvision's ``OxfordIIITPet`` pins) and, where known,
  the size must match. From another ``--url_base`` (a mirror), the archive must open and list completely.
* Extraction checks every member first: no absolute paths, no ``..``, no links pointing outside DEST,
  no devices. Then it extracts into a temporary folder inside DEST and moves the top-level entries into
  place, so a bad archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import TextIO

from odkit.errors import DataError
from odkit.fileio import check_output_dir, remove_stale_temporaries

PETS_URL_BASE = "https://www.robots.ox.ac.uk/~vgg/data/pets/data"


@dataclass(frozen=True)
class Archive:
    name: str
    md5: str | None = None
    size: int | None = None


PETS_ARCHIVES = (
    Archive("images.tar.gz", md5="5c4f3ee8e5d25df40f4fd59a7f44e54c", size=791918971),
    Archive("annotations.tar.gz", md5="95a8c909bbe2e81eed6a22bccdf3f68f"),
)
CHUNK = 1 << 20


class _Progress:
    def __init__(self, name: str, total: int | None, start: int, stream: TextIO) -> None:
        self.name, self.total, self.done, self.stream = name, total, start, stream
        self.t0 = self.last = time.monotonic()
        self.start = start

    def update(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= 1.0:
            self.last = now
            self.show()

    def show(self, end: str = "\r") -> None:
        rate = (self.done - self.start) / max(1e-6, time.monotonic() - self.t0) / 1e6
        if self.total:
            pct = 100.0 * self.done / self.total
            msg = f"{self.name}: {self.done / 1e6:.1f} / {self.total / 1e6:.1f} MB ({pct:.0f}%), {rate:.1f} MB/s"
        else:
            msg = f"{self.name}: {self.done / 1e6:.1f} MB, {rate:.1f} MB/s"
        print(msg, end=end, file=self.stream, flush=True)


def fetch(url: str, dest_path: str, timeout: float = 60.0, stream: TextIO | None = None) -> str:
    """Download ``url`` to ``dest_path`` (resuming ``dest_path.part``); returns ``dest_path``."""
    stream = stream or sys.stderr
    part = dest_path + ".part"
    have = os.path.getsize(part) if os.path.exists(part) else 0
    req = urllib.request.Request(url, headers={"User-Agent": "odkit-download"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - user-chosen http(s) URL
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing left to fetch: the .part is complete
            os.replace(part, dest_path)
            return dest_path
        raise DataError(f"download failed: HTTP {exc.code} {exc.reason}", where=url) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"download failed: {reason}", where=url, hint="check the network or --url_base") from exc
    with resp:
        status = getattr(resp, "status", 200)
        if have and status == 206:
            mode = "ab"
            print(f"resuming {os.path.basename(dest_path)} at {have} bytes", file=stream)
        else:
            mode, have = "wb", 0
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        prog = _Progress(os.path.basename(dest_path), total, have, stream)
        try:
            with open(part, mode) as f:
                while True:
                    chunk = resp.read(CHUNK)
                    if not chunk:
                        break
                    f.write(chunk)
                    prog.update(len(chunk))
        except (OSError, urllib.error.URLError) as exc:
            raise DataError(f"download interrupted after {prog.done} bytes ({exc}); run again to resume",
                            where=url) from exc
        prog.show(end="\n")
    if total is not None and os.path.getsize(part) != total:
        raise DataError(f"download incomplete ({os.path.getsize(part)} of {total} bytes); run again to resume",
                        where=url)
    os.replace(part, dest_path)
    return dest_path


def verify_archive(path: str, archive: Archive | None) -> None:
    """Size / MD5 against the known table when given, else the gzip tar must list completely."""
    if archive is not None and archive.size is not None and os.path.getsize(path) != archive.size:
        raise DataError(f"size {os.path.getsize(path)} != expected {archive.size}", where=path,
                        hint="delete the file and download again")
    if archive is not None and archive.md5:
        h = hashlib.md5()  # noqa: S324 - integrity pin published by torchvision, not security
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(CHUNK), b""):
                h.update(chunk)
        if h.hexdigest() != archive.md5:
            raise DataError(f"MD5 {h.hexdigest()} != expected {archive.md5}", where=path,
                            hint="delete the file and download again")
        return
    try:
        with tarfile.open(path, "r:*") as tf:
            for _ in tf:
                pass
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise DataError(f"archive is corrupt or incomplete ({exc})", where=path,
                        hint="delete it and download again") from exc


def _check_members(tf: tarfile.TarFile, dest: str, where: str) -> list[tarfile.TarInfo]:
    root = os.path.realpath(dest)
    members = []
    for m in tf.getmembers():
        name = m.name
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or os.path.isabs(name) or (len(name) > 1 and name[1] == ":"):
            raise DataError(f"archive member {name!r} has an absolute path; refusing to extract", where=where)
        if ".." in parts:
            raise DataError(f"archive member {name!r} contains '..'; refusing to extract", where=where)
        target = os.path.realpath(os.path.join(root, name))
        if os.path.commonpath([root, target]) != root:
            raise DataError(f"archive member {name!r} escapes {dest}; refusing to extract", where=where)
        if m.issym() or m.islnk():
            link = m.linkname
            base = os.path.dirname(target) if m.issym() else root
            if os.path.isabs(link) or os.path.commonpath([root, os.path.realpath(os.path.join(base, link))]) != root:
                raise DataError(f"archive link {name!r} -> {link!r} points outside {dest}; refusing to extract",
                                where=where)
        elif not (m.isfile() or m.isdir()):
            raise DataError(f"archive member {name!r} is a device / fifo; refusing to extract", where=where)
        members.append(m)
    return members


def safe_extract(archive_path: str, dest: str) -> list[str]:
    """Extract a tar archive into ``dest`` after checking every member; returns the top-level names.

    The archive is extracted into a fresh temporary folder inside ``dest``; only names that do not exist
    yet are moved in (folders are merged). Nothing in ``dest`` is deleted or replaced: a name that exists
    with other content (or as a file where the archive has a folder, or the reverse) is refused before
    anything is moved.
    """
    os.makedirs(dest, exist_ok=True)
    remove_stale_temporaries(dest)
    tmp = os.path.join(dest, f".extract.tmp-{os.getpid()}")
    try:
        with tarfile.open(archive_path, "r:*") as tf:
            members = _check_members(tf, dest, archive_path)
            os.makedirs(tmp, exist_ok=True)
            kwargs = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tf.extractall(tmp, members=members, **kwargs)  # noqa: S202 - members checked above
        tops = sorted(os.listdir(tmp))
        for name in tops:
            _check_clashes(os.path.join(tmp, name), os.path.join(dest, name), archive_path)
        for name in tops:
            _move_new(os.path.join(tmp, name), os.path.join(dest, name))
        return tops
    except (tarfile.TarError, EOFError) as exc:
        raise DataError(f"cannot extract archive ({exc})", where=archive_path) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _same_file(a: str, b: str) -> bool:
    if os.path.getsize(a) != os.path.getsize(b):
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(CHUNK), fb.read(CHUNK)
            if ca != cb:
                return False
            if not ca:
                return True


def _check_clashes(src: str, dst: str, where: str) -> None:
    """DataError if moving ``src`` to ``dst`` would replace or delete something that exists."""
    if not os.path.lexists(dst):
        return
    if os.path.islink(dst) or os.path.isdir(src) != os.path.isdir(dst):
        kind = "folder" if os.path.isdir(dst) else "file"
        raise DataError(f"the archive's {os.path.basename(src)!r} would replace the existing {kind} {dst}; "
                        "nothing was extracted", where=where, hint="move it away or choose another --dest")
    if os.path.isdir(src):
        for name in os.listdir(src):
            _check_clashes(os.path.join(src, name), os.path.join(dst, name), where)
    elif not _same_file(src, dst):
        raise DataError(f"the archive's {os.path.basename(src)!r} would overwrite the existing file {dst}, "
                        "which differs; nothing was extracted", where=where,
                        hint="move it away or choose another --dest")


def _move_new(src: str, dst: str) -> None:
    """Move names that do not exist yet (after _check_clashes, an existing one is identical or a folder)."""
    if not os.path.lexists(dst):
        os.replace(src, dst)
    elif os.path.isdir(src):
        for name in os.listdir(src):
            _move_new(os.path.join(src, name), os.path.join(dst, name))


def download_pets(
    dest: str, url_base: str | None = None, timeout: float = 60.0, keep_archives: bool = True,
    stream: TextIO | None = None,
) -> dict[str, object]:
    """Fetch images.tar.gz + annotations.tar.gz into ``dest``, verify and extract them."""
    stream = stream or sys.stderr
    base = (url_base or PETS_URL_BASE).rstrip("/")
    official = url_base is None or base == PETS_URL_BASE
    check_output_dir(dest, "--dest")
    os.makedirs(dest, exist_ok=True)
    result: dict[str, object] = {"dest": dest, "archives": []}
    for arc in PETS_ARCHIVES:
        path = os.path.join(dest, arc.name)
        marker = os.path.join(dest, f".{arc.name}.extracted")
        if os.path.exists(marker):
            print(f"{arc.name}: already extracted", file=stream)
            continue
        if not os.path.exists(path):
            fetch(f"{base}/{arc.name}", path, timeout=timeout, stream=stream)
        try:
            verify_archive(path, arc if official else None)
        except DataError:
            os.replace(path, path + ".bad")
            raise
        tops = safe_extract(path, dest)
        with open(marker, "w") as f:
            json.dump({"archive": arc.name, "top_level": tops}, f)
        if not keep_archives:
            os.remove(path)
        print(f"{arc.name}: extracted {', '.join(tops)} into {dest}", file=stream)
        result["archives"].append(arc.name)  # type: ignore[union-attr]
    print(f"done: odkit create-pet-tfrecord --data_dir {dest} --output_dir OUT", file=stream)
    return result
