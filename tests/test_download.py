"""`odkit download pets` against a local HTTP server with Range support; safe extraction."""

from __future__ import annotations

import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator

import pytest

from odkit.cli import main
from odkit.data.download import download_pets, safe_extract
from odkit.errors import DataError


def _targz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buf.getvalue()


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    ranges: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        data = self.files.get(self.path.rsplit("/", 1)[-1])
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range")
        start = 0
        if rng:
            self.ranges.append(rng)
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"files": {}, "ranges": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/pets", handler
    finally:
        httpd.shutdown()
        httpd.server_close()


def _pets_archives() -> dict[str, bytes]:
    return {
        "images.tar.gz": _targz({"images/Abyssinian_1.jpg": b"jpegbytes", "images/pug_2.jpg": b"x" * 5000}),
        "annotations.tar.gz": _targz({"annotations/trainval.txt": b"Abyssinian_1 1 1 1\n",
                                      "annotations/xmls/Abyssinian_1.xml": b"<annotation/>"}),
    }


def test_download_extract_and_resume(server, tmp_path, capsys) -> None:
    url, handler = server
    handler.files.update(_pets_archives())
    dest = tmp_path / "pets"
    dest.mkdir()
    # a partial earlier download of images.tar.gz: the rest is fetched with a Range request
    full = handler.files["images.tar.gz"]
    (dest / "images.tar.gz.part").write_bytes(full[:100])
    rc = main(["download", "pets", "--dest", str(dest), "--url_base", url])
    assert rc == 0
    assert handler.ranges == ["bytes=100-"]
    assert (dest / "images.tar.gz").read_bytes() == full
    assert (dest / "images" / "pug_2.jpg").read_bytes() == b"x" * 5000
    assert (dest / "annotations" / "trainval.txt").read_text() == "Abyssinian_1 1 1 1\n"
    assert not [n for n in os.listdir(dest) if n.startswith(".extract") or n.endswith(".part")]
    assert "resuming images.tar.gz at 100 bytes" in capsys.readouterr().err
    # second run: nothing fetched again
    handler.files.clear()
    assert download_pets(str(dest), url_base=url)["archives"] == []


def test_download_errors(server, tmp_path, capsys) -> None:
    url, handler = server
    rc = main(["download", "pets", "--dest", str(tmp_path / "d"), "--url_base", url])
    assert rc == 2
    err = capsys.readouterr().err
    assert "HTTP 404" in err and "images.tar.gz" in err
    handler.files["images.tar.gz"] = b"not a tarball at all"
    with pytest.raises(DataError, match="archive is corrupt or incomplete"):
        download_pets(str(tmp_path / "e"), url_base=url)
    assert not (tmp_path / "e" / "images").exists()


@pytest.mark.parametrize(
    ("members", "links", "pattern"),
    [
        ({"images/ok.jpg": b"1", "../evil.txt": b"x"}, None, "contains '..'"),
        ({"/tmp/odkit_abs_evil.txt": b"x"}, None, "absolute path"),
        ({"images/ok.jpg": b"1"}, {"images/link": "../../outside"}, "points outside"),
        ({"images/ok.jpg": b"1"}, {"images/abs": "/etc/passwd"}, "points outside"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path, members, links, pattern) -> None:
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_targz(members, links))
    dest = tmp_path / "dest"
    with pytest.raises(DataError, match=pattern):
        safe_extract(str(arc), str(dest))
    assert os.listdir(dest) == []  # nothing half-extracted
    assert not (tmp_path / "evil.txt").exists()


def test_safe_extract_keeps_internal_links(tmp_path) -> None:
    arc = tmp_path / "a.tar.gz"
    arc.write_bytes(_targz({"d/real.txt": b"hello"}, {"d/alias.txt": "real.txt"}))
    assert safe_extract(str(arc), str(tmp_path / "out")) == ["d"]
    assert (tmp_path / "out" / "d" / "alias.txt").read_text() == "hello"
