"""`odkit serve`: a real server on 127.0.0.1 in a subprocess where torch cannot be imported.

Every endpoint; `:predict` / `:detect` against `odkit predict` on the same images; micro-batching under
concurrent clients; the bad-input corpus followed by a good request; a slow body; the web page in headless
Chromium; and the light install (no torch) in a fresh venv built from the local wheel without network.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from odkit.cli import main

REPO = Path(__file__).resolve().parents[1]
MIN_SCORE, MAX_BOXES = 0.3, 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torch_blocking_shim(root: Path) -> Path:
    """A folder that, first on PYTHONPATH, makes `import torch` / `import torchvision` fail like a light install."""
    for name in ("torch", "torchvision"):
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "__init__.py").write_text(f"raise ModuleNotFoundError('blocked for this test', name={name!r})\n")
    return root


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None,
            timeout: float = 30) -> tuple[int, bytes, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body, headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def get_json(port: int, path: str) -> Any:
    status, body, _ = request(port, "GET", path)
    assert status == 200, body
    return json.loads(body)


class Server:
    def __init__(self, args: list[str], env: dict[str, str], log: Path, port: int) -> None:
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(args, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {log.read_text()}")
            try:
                if request(port, "GET", "/healthz", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            if time.time() > deadline:
                self.stop()
                raise AssertionError(f"server did not come up: {log.read_text()}")
            time.sleep(0.2)

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text()


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The demo SSD (dynamic batch) and the tiny detector (fixed batch of 1)."""
    import torch
    from tiny_model import FixedResizer, TinyDetector, export_untrained_demo_ssd

    from odkit.export.exporter import export_model

    root = tmp_path_factory.mktemp("serve_models")
    ssd = export_untrained_demo_ssd(root / "ssd", size=64, class_names=("raccoon",))
    torch.manual_seed(0)
    export_model(TinyDetector(num_classes=2), FixedResizer(64, 64), root / "tiny", formats=["onnx"],
                 classes=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    return {"ssd": ssd, "tiny": root / "tiny"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    d = tmp_path_factory.mktemp("serve_images")
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(120, 160), (90, 70), (120, 160)]):
        yy, xx = np.mgrid[0:h, 0:w]
        img = np.stack([np.sin(xx / 7 + i) * 100 + 120, np.cos(yy / 5) * 90 + 120, (xx + yy) % 256], -1)
        img = np.clip(img + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
        p = d / f"img{i}.{'png' if i == 1 else 'jpg'}"
        Image.fromarray(img).save(p)
        paths.append(p)
    return paths


@pytest.fixture(scope="module")
def server(exports: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("serve_run")
    shim = torch_blocking_shim(tmp / "shim")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO / "src")]), "OMP_NUM_THREADS": "1"}
    port = free_port()
    srv = Server([sys.executable, "-m", "odkit", "serve", "--model", f"ssd={exports['ssd']}", "--model",
                  f"tiny={exports['tiny']}", "--port", str(port), "--max_batch", "4", "--batch_timeout_ms", "30",
                  "--max_body_mb", "2", "--request_timeout_s", "1.5", "--num_threads", "1"],
                 env, tmp / "server.log", port)
    yield srv
    log = srv.stop()
    assert "Traceback" not in log, log


def b64(path: Path) -> dict[str, str]:
    return {"b64": base64.b64encode(path.read_bytes()).decode()}


def post_json(port: int, path: str, obj: Any) -> tuple[int, Any]:
    status, body, _ = request(port, "POST", path, json.dumps(obj).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def as_detections(pred: dict[str, Any], min_score: float = MIN_SCORE, max_boxes: int = MAX_BOXES) -> list[tuple]:
    """TF OD API output dict of one image -> [(class_id, score, box)] like odkit predict keeps them."""
    n = int(pred["num_detections"])
    scores = np.asarray(pred["detection_scores"][:n])
    out = []
    for i in np.argsort(-scores, kind="stable"):
        if scores[i] < min_score or len(out) >= max_boxes:
            break
        out.append((int(round(pred["detection_classes"][i])), float(scores[i]),
                    np.clip(np.asarray(pred["detection_boxes"][i]), 0, 1)))
    return out


def assert_same(dets: list[tuple], record: dict[str, Any]) -> None:
    assert len(dets) == len(record["detections"]) > 0
    for (cid, score, box), d in zip(dets, record["detections"]):
        assert cid == d["class_id"]
        assert abs(score - d["score"]) < 1e-5
        assert np.abs(box - np.asarray(d["box"])).max() < 1e-5


def test_status_metadata_health_page_metrics(server: Server) -> None:
    port = server.port
    health = get_json(port, "/healthz")
    assert health["status"] == "ok"
    assert {m["name"]: m["max_batch"] for m in health["models"]} == {"ssd": 4, "tiny": 1}  # tiny: fixed batch
    status = get_json(port, "/v1/models/ssd")
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    assert get_json(port, "/v1/models/ssd/versions/1")["model_version_status"][0]["version"] == "1"
    meta = get_json(port, "/v1/models/ssd/metadata")
    assert meta["model_spec"]["name"] == "ssd"
    sig = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert sig["inputs"]["input_tensor"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in sig["inputs"]["input_tensor"]["tensor_shape"]["dim"]] == ["-1", "-1", "-1", "3"]
    assert {"detection_boxes", "detection_scores", "detection_classes", "num_detections"} <= set(sig["outputs"])
    assert sig["outputs"]["detection_boxes"]["dtype"] == "DT_FLOAT"
    assert meta["metadata"]["label_map"] == [{"id": 1, "name": "raccoon"}]
    status, page, headers = request(port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"odkit serve" in page and b'src="app.js"' in page and b"http" not in page.split(b"<footer")[0]
    for asset in ("/app.js", "/style.css"):
        status, body, _ = request(port, "GET", asset)
        assert status == 200 and len(body) > 500
        assert b"http://" not in body and b"https://" not in body and b"//cdn" not in body  # works offline
    status, text, headers = request(port, "GET", "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain")
    text_s = text.decode()
    assert re.search(r'odkit_serve_requests_total\{model="ssd",endpoint="metadata",code="200"\} 1', text_s)
    for name in ("odkit_serve_request_duration_seconds_bucket", "odkit_serve_images_per_second",
                 "odkit_serve_errors_total"):
        assert name in text_s


def test_predict_and_detect_match_odkit_predict(server: Server, exports: dict[str, Path], images: list[Path],
                                                tmp_path: Path) -> None:
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(exports["ssd"]), "--images", *map(str, images), "--output_dir", str(out),
                 "--min_score", str(MIN_SCORE), "--max_boxes", str(MAX_BOXES), "--no_draw"]) == 0
    records = json.loads((out / "detections.json").read_text())
    port = server.port
    # Row format with b64 images, and with a nested [H][W][3] list (pixels decoded by Pillow here).
    status, rows = post_json(port, "/v1/models/ssd:predict",
                             {"signature_name": "serving_default", "instances": [b64(p) for p in images]})
    assert status == 200 and len(rows["predictions"]) == len(images)
    for pred, rec in zip(rows["predictions"], records):
        assert_same(as_detections(pred), rec)
        assert set(pred) >= {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}
    pixels = np.asarray(Image.open(images[1]).convert("RGB")).tolist()
    status, named = post_json(port, "/v1/models/ssd:predict", {"instances": [{"input_tensor": pixels}]})
    assert status == 200
    assert_same(as_detections(named["predictions"][0]), records[1])
    # Columnar format: outputs batched over the images.
    status, cols = post_json(port, "/v1/models/ssd:predict", {"inputs": {"input_tensor": [b64(p) for p in images]}})
    assert status == 200 and len(cols["outputs"]["num_detections"]) == len(images)
    for i, rec in enumerate(records):
        assert_same(as_detections({k: v[i] for k, v in cols["outputs"].items()}), rec)
    # :detect, raw body and multipart (two files): the same JSON objects as detections.json.
    status, body, headers = request(port, "POST", f"/v1/models/ssd:detect?min_score={MIN_SCORE}&max_boxes={MAX_BOXES}",
                                    images[0].read_bytes(), {"Content-Type": "image/jpeg"})
    assert status == 200 and float(headers["x-odkit-latency-ms"]) > 0
    (got,) = json.loads(body)
    assert (got["width"], got["height"]) == (records[0]["width"], records[0]["height"])
    assert got["detections"] == records[0]["detections"]
    status, body, _ = request(port, "POST", f"/v1/models/ssd:detect?min_score={MIN_SCORE}&max_boxes={MAX_BOXES}",
                              images[2].read_bytes(), {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and json.loads(body)[0]["detections"] == records[2]["detections"]  # curl --data-binary
    boundary = "odkitboundary"
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{p.name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + p.read_bytes() + b"\r\n" for p in images[:2]
    ) + f"--{boundary}--\r\n".encode()
    status, body, _ = request(port, "POST", f"/v1/models/ssd:detect?min_score={MIN_SCORE}&max_boxes={MAX_BOXES}",
                              parts, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200
    multi = json.loads(body)
    assert [r["image"] for r in multi] == [p.name for p in images[:2]]
    assert [r["detections"] for r in multi] == [r["detections"] for r in records[:2]]
    # The fixed-batch model answers too (runs one image at a time).
    status, tiny = post_json(port, "/v1/models/tiny:predict", {"instances": [b64(p) for p in images[:2]]})
    assert status == 200 and len(tiny["predictions"]) == 2


def _batch_histogram(port: int) -> tuple[int, int]:
    """(runs with a single image, all runs) of the ssd model, from /metrics."""
    text = request(port, "GET", "/metrics")[1].decode()
    ones = re.search(r'odkit_serve_batch_size_bucket\{model="ssd",le="1"\} (\d+)', text)
    total = re.search(r'odkit_serve_batch_size_count\{model="ssd"\} (\d+)', text)
    assert ones and total, text
    return int(ones.group(1)), int(total.group(1))


def test_concurrent_requests_are_micro_batched_with_the_same_answers(server: Server, images: list[Path]) -> None:
    port = server.port
    ones0, total0 = _batch_histogram(port)
    body = {"instances": [b64(images[0])]}
    status, ref = post_json(port, "/v1/models/ssd:predict", body)
    assert status == 200
    with ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda _: post_json(port, "/v1/models/ssd:predict", body), range(24)))
    for status, got in answers:
        assert status == 200
        for name in ("detection_boxes", "detection_scores", "detection_classes", "num_detections"):
            assert np.abs(np.asarray(got["predictions"][0][name]) - np.asarray(ref["predictions"][0][name])).max() < 1e-5
    ones1, total1 = _batch_histogram(port)
    runs, single = total1 - total0, ones1 - ones0
    assert runs < 25 and single < runs, (runs, single)  # 25 images took fewer runs: some batches had > 1 image


def png_header(width: int, height: int) -> bytes:
    """A valid PNG header claiming width x height (a decompression bomb if decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def _errors_total(port: int) -> int:
    text = request(port, "GET", "/metrics")[1].decode()
    return sum(int(n) for n in re.findall(r"^odkit_serve_errors_total\{[^}]*\} (\d+)$", text, re.M))


def test_bad_input_corpus_gets_4xx_fast_then_a_good_request_succeeds(server: Server, images: list[Path]) -> None:
    port = server.port
    jpeg = images[0].read_bytes()
    P, D = "/v1/models/ssd:predict", "/v1/models/ssd:detect"

    def js(obj: Any) -> bytes:
        return json.dumps(obj).encode()

    corpus: list[tuple[str, str, str, bytes, dict[str, str], int]] = [
        ("non-image", "POST", D, b"this is not an image", {"Content-Type": "image/jpeg"}, 400),
        ("non-image b64", "POST", P, js({"instances": [{"b64": base64.b64encode(b"GIF89a?").decode()}]}), {}, 400),
        ("truncated JPEG", "POST", D, jpeg[: len(jpeg) // 2], {}, 400),
        ("30000x30000 PNG header", "POST", D, png_header(30000, 30000), {}, 400),
        ("30000x30000 PNG header b64", "POST", P, js({"instances": [b64_bytes(png_header(30000, 30000))]}), {}, 400),
        ("8000x6000 PNG header (48 Mpx, over --max_pixels 40 Mpx)", "POST", D, png_header(8000, 6000), {}, 400),
        ("malformed JSON", "POST", P, b'{"instances": [', {}, 400),
        ("JSON not an object", "POST", P, b"[1, 2, 3]", {}, 400),
        ("no instances/inputs", "POST", P, js({"signature_name": "serving_default"}), {}, 400),
        ("both instances and inputs", "POST", P, js({"instances": [], "inputs": []}), {}, 400),
        ("empty instances", "POST", P, js({"instances": []}), {}, 400),
        ("wrong rank", "POST", P, js({"instances": [[[1, 2], [3, 4]]]}), {}, 400),
        ("4 channels", "POST", P, js({"instances": [[[[1, 2, 3, 4]]]]}), {}, 400),
        ("ragged", "POST", P, js({"instances": [[[[1, 2, 3]], [[1, 2]]]]}), {}, 400),
        ("float values for DT_UINT8", "POST", P, js({"instances": [[[[1.5, 2, 3]]]]}), {}, 400),
        ("values over 255", "POST", P, js({"instances": [[[[300, 2, 3]]]]}), {}, 400),
        ("strings", "POST", P, js({"instances": [[[["a", "b", "c"]]]]}), {}, 400),
        ("bad base64", "POST", P, js({"instances": [{"b64": "!!not base64!!"}]}), {}, 400),
        ("unknown input name", "POST", P, js({"instances": [{"images": [[[1, 2, 3]]]}]}), {}, 400),
        ("unknown model", "POST", "/v1/models/nope:predict", js({"instances": [b64(images[0])]}), {}, 404),
        ("unknown model status", "GET", "/v1/models/nope", b"", {}, 404),
        ("unknown version", "GET", "/v1/models/ssd/versions/7", b"", {}, 404),
        ("unknown signature", "POST", P, js({"signature_name": "detect", "instances": [b64(images[0])]}), {}, 400),
        ("unknown method", "POST", "/v1/models/ssd:classify", b"{}", {}, 404),
        ("GET on :predict", "GET", P, b"", {}, 405),
        ("unknown path", "GET", "/v2/whatever", b"", {}, 404),
        ("multipart without a file", "POST", D, b'--b\r\nContent-Disposition: form-data; name="a"\r\n\r\nx\r\n--b--\r\n',
         {"Content-Type": "multipart/form-data; boundary=b"}, 400),
        ("broken multipart", "POST", D, b"garbage", {"Content-Type": "multipart/form-data; boundary=b"}, 400),
        ("JSON to :detect", "POST", D, b"{}", {"Content-Type": "application/json"}, 400),
        ("bad min_score", "POST", D + "?min_score=lots", jpeg, {}, 400),
        ("empty body", "POST", D, b"", {}, 400),
        ("body over --max_body_mb", "POST", D, b"\0" * (2 * 1024 * 1024 + 10), {}, 413),
    ]
    errors_before = _errors_total(port)
    for name, method, path, body, headers, want in corpus:
        t0 = time.perf_counter()
        status, answer, hdrs = request(port, method, path, body, headers)
        elapsed = time.perf_counter() - t0
        assert status == want, (name, status, answer[:300])
        assert hdrs["content-type"].startswith("application/json"), name
        message = json.loads(answer)["error"]
        assert isinstance(message, str) and message and "\n" not in message, name
        assert elapsed < 1.0, (name, elapsed)
    assert _errors_total(port) - errors_before == len(corpus)
    # A Content-Length far over the limit is refused before any body byte is read.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /v1/models/ssd:detect HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.1 413")
    status, ok = post_json(port, P, {"instances": [b64(images[0])]})
    assert status == 200 and ok["predictions"][0]["num_detections"] >= 1


def b64_bytes(data: bytes) -> dict[str, str]:
    return {"b64": base64.b64encode(data).decode()}


def test_slow_client_gets_408_and_does_not_block_others(server: Server, images: list[Path]) -> None:
    port = server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as slow:
        slow.sendall(b"POST /v1/models/ssd:detect HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc")
        t0 = time.perf_counter()
        status, _, _ = request(port, "POST", "/v1/models/ssd:detect", images[0].read_bytes())
        assert status == 200 and time.perf_counter() - t0 < 1.5  # served while the slow body is pending
        answer = b""
        while b"}" not in answer and (chunk := slow.recv(300)):
            answer += chunk
        waited = time.perf_counter() - t0
    assert answer.startswith(b"HTTP/1.1 408") and b"not received within 1.5 s" in answer
    assert waited < 5
    # Slow or missing headers: the connection is closed at the same deadline (uvicorn alone never closes it).
    with socket.create_connection(("127.0.0.1", port), timeout=10) as idle, \
            socket.create_connection(("127.0.0.1", port), timeout=10) as dribble:
        dribble.sendall(b"POST /v1/models/ssd:detect HTTP/1.1\r\nHost: x\r\n")
        t0 = time.perf_counter()
        assert idle.recv(100) == b"" and dribble.recv(100) == b""
        assert time.perf_counter() - t0 < 5
    status, _, _ = request(port, "GET", "/healthz")
    assert status == 200


def test_serve_cli_errors_are_one_line(tmp_path: Path, exports: dict[str, Path]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cases = [
        (["--model", str(tmp_path / "missing")], "not found"),
        (["--model", str(tmp_path)], "not an odkit export folder"),
        (["--model", f"a={exports['ssd']}", "--model", f"a={exports['tiny']}"], "two models are named 'a'"),
        (["--model", str(exports["ssd"]), "--max_batch", "0"], "--max_batch 0"),
    ]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        cases.append((["--model", str(exports["ssd"]), "--port", str(taken.getsockname()[1])], "cannot listen"))
        for args, msg in cases:
            proc = subprocess.run([sys.executable, "-m", "odkit", "serve", *args], env=env, capture_output=True,
                                  text=True, timeout=60)
            assert proc.returncode == 2, (args, proc.stderr)
            assert msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# ---------------------------------------------------------------------------------------------------------------
# The web page in a real browser.

CHROMIUM_FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1200,900")


def test_web_page_in_headless_chromium(server: Server, shared_dir: Path, tmp_path: Path) -> None:
    browser, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not browser or not driver_bin:
        pytest.skip("chromium / chromedriver not installed (make test installs them: apt-get install chromium "
                    "chromium-driver, as root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install odkit[dev])")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    image = shared_dir / "datasets" / "raccoon" / "images" / "raccoon-1.jpg"
    if not image.is_file():
        pytest.skip(f"{image} not found")
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=driver_bin), options=opts)
    try:
        driver.set_page_load_timeout(30)
        driver.get(f"http://127.0.0.1:{server.port}/")
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
        assert "raccoon" in driver.find_element(By.ID, "classes").text
        upload = driver.find_element(By.ID, "files")
        driver.execute_script("arguments[0].hidden = false;", upload)
        upload.send_keys(str(image))
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".card[data-done]"))
        card = driver.find_element(By.CSS_SELECTOR, ".card[data-done]")
        assert card.get_attribute("data-done") == "1", card.text
        boxes = driver.find_elements(By.CSS_SELECTOR, ".card .odkit-box")
        # The page asks for every detection >= 0.01 and shows those >= the slider (0.5), like :detect would.
        status, body, _ = request(server.port, "POST", "/v1/models/ssd:detect?min_score=0.5&max_boxes=100",
                                  image.read_bytes())
        want = json.loads(body)[0]["detections"]
        assert status == 200 and len(boxes) == len(want) > 0
        for el in boxes:
            assert el.get_attribute("data-class-name") == "raccoon" and el.text.startswith("raccoon ")
            assert el.is_displayed() and el.size["width"] > 0 and el.size["height"] > 0
        assert sorted(float(el.get_attribute("data-score")) for el in boxes) == pytest.approx(
            sorted(d["score"] for d in want), abs=1e-3)
        assert "server" in card.text and "ms" in card.text
        driver.save_screenshot(str(tmp_path / "serve_page.png"))
        # The slider redraws locally: at 1.0 no box is left, back to 0.5 they all return.
        for value, expected in (("1", 0), ("0.5", len(want))):
            driver.execute_script("const s = document.getElementById('threshold'); s.value = arguments[0];"
                                  "s.dispatchEvent(new Event('input'));", value)
            assert len(driver.find_elements(By.CSS_SELECTOR, ".card .odkit-box")) == expected
    finally:
        driver.quit()
    shot = tmp_path / "serve_page.png"
    assert shot.stat().st_size > 10_000 and Image.open(shot).size[0] > 500


# ---------------------------------------------------------------------------------------------------------------
# The light install: a fresh venv with `odkit[serve]` from the local wheel, no torch, no network.


def _repack_installed(dist_name: str, dest: Path) -> Path:
    """Rebuild the wheel of an installed distribution from its installed files (offline, no cache needed)."""
    import hashlib
    import zipfile
    from importlib import metadata

    dist = metadata.distribution(dist_name)
    files = [f for f in dist.files or [] if not str(f).startswith("..") and "__pycache__" not in str(f)]
    info_dir = next(str(f).split("/")[0] for f in files if str(f).endswith(".dist-info/METADATA"))
    wheel_text = Path(dist.locate_file(f"{info_dir}/WHEEL")).read_text()
    tags = [t.strip() for t in re.findall(r"^Tag:(.*)$", wheel_text, re.M)]
    parts = [sorted({t.split("-")[i] for t in tags}) for i in range(3)]
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    whl = dest / f"{name}-{dist.version}-{'.'.join(parts[0])}-{'.'.join(parts[1])}-{'.'.join(parts[2])}.whl"
    record = []
    skip = {f"{info_dir}/{n}" for n in ("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")}
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_STORED) as zf:
        for f in files:
            rel = str(f)
            src = Path(dist.locate_file(f))
            if rel in skip or not src.is_file():
                continue
            data = src.read_bytes()
            zf.writestr(rel, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{rel},sha256={digest},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return whl


def _requirement_closure(requirements: list[str], extras: set[str]) -> set[str]:
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: set[str] = set()
    todo = [(r, extras) for r in requirements]
    while todo:
        text, ex = todo.pop()
        req = Requirement(text)
        if req.marker is not None and not any(req.marker.evaluate({"extra": e}) for e in (ex or {""})):
            continue
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        if key == "odkit" or key in seen:
            continue
        seen.add(key)
        todo.extend((r, set(req.extras)) for r in metadata.distribution(req.name).requires or [])
    return seen


def test_light_install_has_no_torch_and_runs_predict_and_serve(tmp_path: Path, exports: dict[str, Path],
                                                               images: list[Path]) -> None:
    pytest.importorskip("uvicorn", reason="the serve extra is not installed here (make test installs it)")
    pytest.importorskip("packaging")
    from importlib import metadata

    src = tmp_path / "src_copy"
    shutil.copytree(REPO / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (REPO / name).exists():
            shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    # Hermetic pip: no config files, no PIP_* / PYTHONPATH from the caller (a src/ on PYTHONPATH with an
    # egg-info would look like an installed odkit to the target interpreter).
    pip_env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_") and k not in ("PYTHONPATH", "PYTHONHOME")}
    pip_env["PIP_CONFIG_FILE"] = os.devnull
    proc = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(wheels),
                           str(src)], capture_output=True, text=True, timeout=300, env=pip_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (odkit_whl,) = wheels.glob("odkit-*.whl")
    import zipfile

    with zipfile.ZipFile(odkit_whl) as zf:
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert any(n.endswith("serve/static/index.html") for n in zf.namelist())
    requires = re.findall(r"^Requires-Dist: (.*)$", meta, re.M)
    base = [r for r in requires if "extra ==" not in r]
    assert base and not any(re.match(r"torch", r) for r in base), base  # the base install is the light one
    needed = _requirement_closure(requires, {"serve"})
    assert not {"torch", "torchvision"} & needed, needed
    for dist in sorted(needed):
        try:
            _repack_installed(dist, wheels)
        except metadata.PackageNotFoundError:
            pytest.skip(f"{dist} is not installed here, so the offline light install cannot be assembled")
    venv = tmp_path / "light"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    proc = subprocess.run([*pip, "--python", str(py), "install", "--no-index", "--no-compile", "--find-links",
                           str(wheels), f"odkit[serve] @ {odkit_whl.as_uri()}"],
                          capture_output=True, text=True, timeout=300, env=pip_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    probe = subprocess.run([str(py), "-c", "import torch"], capture_output=True, text=True, env=env, timeout=60)
    assert probe.returncode != 0 and "No module named 'torch'" in probe.stderr
    where = subprocess.run([str(py), "-c", "import odkit; print(odkit.__file__)"], capture_output=True, text=True,
                           env=env, timeout=60)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    odkit_bin = str(venv / "bin" / "odkit")
    out = tmp_path / "pred"
    proc = subprocess.run([odkit_bin, "predict", "--model", str(exports["ssd"]), "--images", str(images[0]),
                           "--output_dir", str(out), "--min_score", "0.3"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads((out / "detections.json").read_text())[0]
    assert record["detections"]
    proc = subprocess.run([odkit_bin, "train", "--pipeline_config_path", "x.config", "--model_dir", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 2 and 'pip install "odkit[train]"' in proc.stderr and "Traceback" not in proc.stderr
    port = free_port()
    srv = Server([odkit_bin, "serve", "--model", str(exports["ssd"]), "--model_name", "light", "--port", str(port)],
                 env, tmp_path / "light_server.log", port)
    try:
        status, body, _ = request(port, "POST", "/v1/models/light:detect?min_score=0.3&max_boxes=20", images[0].read_bytes())
    finally:
        log = srv.stop()
    assert status == 200 and json.loads(body)[0]["detections"] == record["detections"], log
    assert "Traceback" not in log


def test_missing_serve_extra_is_one_line(tmp_path: Path, exports: dict[str, Path]) -> None:
    shim = tmp_path / "shim"
    (shim / "starlette").mkdir(parents=True)
    (shim / "starlette" / "__init__.py").write_text("raise ModuleNotFoundError('blocked', name='starlette')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO / "src")])}
    proc = subprocess.run([sys.executable, "-m", "odkit", "serve", "--model", str(exports["tiny"])], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == ("odkit serve: error: `odkit serve` needs the HTTP stack, which this install lacks "
                                   "(no module 'starlette') (pip install \"odkit[serve]\")")


def test_model_specs_names_and_folders(tmp_path: Path, exports: dict[str, Path]) -> None:
    from odkit.errors import OdkitError
    from odkit.serve.models import resolve_model_specs

    assert resolve_model_specs([str(exports["ssd"])], None) == [("ssd", exports["ssd"])]
    assert resolve_model_specs([str(exports["ssd"])], "pets") == [("pets", exports["ssd"])]
    assert resolve_model_specs([f"x={exports['tiny']}"], None) == [("x", exports["tiny"])]
    folder = tmp_path / "exports"
    folder.mkdir()
    for name in ("b_model", "a_model"):
        (folder / name).symlink_to(exports["tiny"], target_is_directory=True)
    (folder / "not_an_export").mkdir()
    assert resolve_model_specs([str(folder)], None) == [("a_model", folder / "a_model"), ("b_model", folder / "b_model")]
    with pytest.raises(OdkitError, match="--model_name needs exactly one model"):
        resolve_model_specs([str(folder)], "pets")
    with pytest.raises(OdkitError, match="not usable in a URL"):
        from odkit.serve.models import load_model

        load_model("bad:name", exports["tiny"], max_batch=1, num_threads=1, max_pixels=10**6)
