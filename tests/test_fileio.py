"""odkit.fileio (safe_path, atomic outputs, stale temporaries, output-path checks), the decoded-pixels limit,
the CLI's last-resort handler, and download's no-clobber extraction (issue 18 item 2)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from odkit.cli import EXIT_BUG, main
from odkit.data.download import safe_extract
from odkit.data.image_io import check_image_pixels, image_info, max_image_pixels
from odkit.errors import DataError, OdkitError
from odkit.fileio import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    check_output_dir,
    check_output_file,
    remove_stale_temporaries,
    safe_path,
)


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# ---------------------------------------------------------------------------------------------- safe_path


def test_safe_path_refuses_escape_absolute_and_symlink_out(tmp_path):
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "secret.txt").write_text("SECRET")
    (root / "ok.txt").write_text("x")
    os.symlink(tmp_path / "secret.txt", root / "link_out.txt")
    os.symlink(root / "ok.txt", root / "sub" / "link_in.txt")
    assert safe_path(root, "sub/../ok.txt") == root / "sub/../ok.txt"
    assert safe_path(root, "sub/link_in.txt").read_text() == "x"  # symlink inside the root: fine
    for bad in ("../secret.txt", "sub/../../secret.txt", "link_out.txt", str(tmp_path / "secret.txt"), ""):
        with pytest.raises(DataError) as ei:
            safe_path(root, bad)
        assert "\n" not in str(ei.value)


# ---------------------------------------------------------------------------------------------- atomic


def test_atomic_write_leaves_nothing_on_failure_and_replaces_on_success(tmp_path):
    out = tmp_path / "f.txt"
    atomic_write_text(out, "one")
    with pytest.raises(RuntimeError), __import__("odkit.fileio").fileio.atomic_write(out, "w") as f:
        f.write("half")
        raise RuntimeError("boom")
    assert out.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.txt"]
    atomic_write_bytes(out, b"two")
    assert out.read_bytes() == b"two"


def test_atomic_write_errors_are_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OdkitError, match="cannot write"):
        atomic_write_text(tmp_path / "file" / "under.txt", "x")
    with pytest.raises(OdkitError, match="is a folder"):
        atomic_write_text(tmp_path, "x")


def test_atomic_dir_all_or_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_dir(out) as tmp:
        (tmp / "a").write_text("1")
    with atomic_dir(out) as tmp:
        (tmp / "b").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_stale_temporaries_of_dead_processes_are_removed_live_ones_kept(tmp_path):
    dead = _dead_pid()
    (tmp_path / f".x.record-00000-of-00001.tmp-{dead}").write_text("half")
    (tmp_path / f".exported.tmp-{dead}").mkdir()
    (tmp_path / f".plot.tmp-{dead}.png").write_text("half")
    (tmp_path / f".mine.tmp-{os.getpid()}").write_text("live")
    (tmp_path / "keep.txt").write_text("user file")
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [f".mine.tmp-{os.getpid()}", "keep.txt"]


def test_output_path_checks(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OdkitError, match="is a file"):
        check_output_dir(tmp_path / "file", "--model_dir")
    with pytest.raises(OdkitError, match="which is a file"):
        check_output_dir(tmp_path / "file" / "sub", "--model_dir")
    with pytest.raises(OdkitError, match="not writable"):
        check_output_dir("/proc/odkit_out", "--model_dir")
    with pytest.raises(OdkitError, match="is a folder"):
        check_output_file(tmp_path / "dir", "--out")
    with pytest.raises(OdkitError, match="which is a file"):
        check_output_file(tmp_path / "file" / "x.record", "--output_path")
    assert check_output_dir(tmp_path / "new" / "sub", "--model_dir") == tmp_path / "new" / "sub"
    assert check_output_file(tmp_path / "new" / "x.record", "--output_path").name == "x.record"


# ---------------------------------------------------------------------------------------------- pixels


def _png_header(w: int, h: int) -> bytes:
    import struct
    import zlib

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(
        b"IEND", b"")


def test_decoded_pixels_limit_is_configurable(monkeypatch):
    big = _png_header(20000, 20000)
    with pytest.raises(DataError, match="Mpx limit"):
        image_info(big, where="x.png")
    import odkit.data.image_io as image_io

    with pytest.raises(DataError, match="Mpx limit"):
        image_io.decode_image(big, where="rec")  # refused before torchvision allocates 1.2 GB
    monkeypatch.setenv("ODKIT_MAX_IMAGE_PIXELS", "100")
    assert max_image_pixels() == 100
    with pytest.raises(DataError, match="Mpx limit"):
        check_image_pixels(11, 10)
    check_image_pixels(10, 10)
    monkeypatch.setenv("ODKIT_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(DataError, match="not an integer"):
        max_image_pixels()


# ---------------------------------------------------------------------------------------------- CLI handler


def test_unexpected_exception_is_one_line_naming_command_and_input(tmp_path, monkeypatch, capsys):
    import odkit.cli.config_cmd as config_cmd

    def boom(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(config_cmd, "run", boom)
    monkeypatch.delenv("ODKIT_DEBUG", raising=False)
    cfg = tmp_path / "p.config"
    cfg.write_text("")
    rc = main(["config", "validate", str(cfg)])
    err = capsys.readouterr().err
    assert rc == EXIT_BUG
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "odkit config" in err and str(cfg) in err and "this is a bug in odkit, please report it" in err
    rc = main(["config", "validate", str(cfg), "--debug"])
    err = capsys.readouterr().err
    assert rc == EXIT_BUG and "Traceback" in err and "ZeroDivisionError" in err
    monkeypatch.setenv("ODKIT_DEBUG", "1")
    main(["config", "validate", str(cfg)])
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["create-tfrecord", "--format", "voc", "--output_path", "x", "--num_shards", "abc"])
    err = capsys.readouterr().err
    assert ei.value.code == 2 and err.count("\n") == 1 and "invalid int value" in err


# ---------------------------------------------------------------------------------------------- item 2


def _targz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_extract_never_deletes_an_existing_folder_or_file(tmp_path):
    dest = tmp_path / "D"
    (dest / "keepme").mkdir(parents=True)
    (dest / "keepme" / "important.txt").write_text("precious")
    (dest / "notes.txt").write_text("mine")
    arc = tmp_path / "a.tar.gz"
    _targz(arc, {"keepme": b"a file named like the folder", "new/x.txt": b"x"})
    with pytest.raises(DataError, match="would replace the existing folder"):
        safe_extract(str(arc), str(dest))
    assert (dest / "keepme" / "important.txt").read_text() == "precious"
    assert not (dest / "new").exists()  # nothing moved in
    _targz(arc, {"notes.txt": b"theirs"})
    with pytest.raises(DataError, match="would overwrite the existing file"):
        safe_extract(str(arc), str(dest))
    assert (dest / "notes.txt").read_text() == "mine"
    _targz(arc, {"keepme/other.txt": b"o", "new/x.txt": b"x"})  # merging new names into a folder is fine
    assert safe_extract(str(arc), str(dest)) == ["keepme", "new"]
    assert (dest / "keepme" / "important.txt").read_text() == "precious"
    assert (dest / "keepme" / "other.txt").read_text() == "o"
    assert sorted(p.name for p in dest.iterdir()) == ["keepme", "new", "notes.txt"]
