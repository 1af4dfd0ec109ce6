"""odkit.Detector and image loading: inputs of every kind, bad model folders, bad images."""

from __future__ import annotations

import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import FixedResizer, TinyDetector

import odkit
from odkit.errors import DataError, OdkitError
from odkit.export.exporter import export_model
from odkit.inference.detector import Detection, Detector
from odkit.inference.draw import draw_detections
from odkit.inference.images import load_image, open_image


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("det") / "model"
    export_model(TinyDetector(num_classes=2), FixedResizer(64, 64), out,
                 classes=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog", "display_name": "Dog"}])
    return out


def _photo(h: int = 48, w: int = 72) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) % 256], -1).astype(np.uint8)


def test_detect_accepts_path_pil_array_and_bytes(model_dir, tmp_path):
    pixels = _photo()
    path = tmp_path / "a.png"
    Image.fromarray(pixels).save(path)
    det = odkit.Detector(model_dir, min_score=0.0, max_boxes=5)
    results = [det.detect(x) for x in (str(path), path, Image.open(path), pixels, path.read_bytes())]
    assert all(r == results[0] for r in results)
    assert 0 < len(results[0]) <= 5
    d = results[0][0]
    assert isinstance(d, Detection) and d.class_name in ("cat", "Dog")
    assert all(a.score >= b.score for a, b in zip(results[0], results[0][1:]))
    ymin, xmin, ymax, xmax = d.box
    assert 0 <= ymin <= ymax <= 1 and 0 <= xmin <= xmax <= 1
    assert d.to_dict()["box"] == [round(v, 6) for v in d.box]
    assert det.detect(pixels, min_score=1.01) == []


def test_grayscale_rgba_palette_and_exif(tmp_path):
    rgb = _photo()
    gray = Image.fromarray(rgb[:, :, 0], mode="L")
    assert load_image(gray).shape == (48, 72, 3)
    assert np.array_equal(load_image(gray)[:, :, 1], rgb[:, :, 0])
    rgba = np.concatenate([rgb, np.full((48, 72, 1), 7, np.uint8)], -1)
    assert np.array_equal(load_image(Image.fromarray(rgba, mode="RGBA")), rgb)
    assert np.array_equal(load_image(rgba), rgb)
    assert load_image(Image.fromarray(rgb).convert("P")).shape == (48, 72, 3)
    assert load_image(rgb[:, :, :1]).shape == (48, 72, 3)
    # EXIF orientation 6 (rotate 90 cw on display): a 48x72 stored image loads as 72x48.
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(rgb).save(path, exif=exif.tobytes())
    assert load_image(path).shape == (72, 48, 3)
    assert load_image(np.full((4, 5, 3), 300.0)).max() == 255


def test_bad_images_give_data_errors(tmp_path):
    (tmp_path / "notes.jpg").write_text("not an image")
    with pytest.raises(DataError, match="not an image"):
        open_image(tmp_path / "notes.jpg")
    with pytest.raises(DataError, match="cannot read image"):
        open_image(tmp_path / "missing.jpg")
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, format="JPEG")
    (tmp_path / "cut.jpg").write_bytes(buf.getvalue()[:200])
    with pytest.raises(DataError, match="cut.jpg"):
        open_image(tmp_path / "cut.jpg")
    with pytest.raises(DataError, match="shape"):
        load_image(np.zeros((4, 5, 2), np.uint8))
    with pytest.raises(DataError, match="NaN"):
        load_image(np.full((4, 5, 3), np.nan))


def _bomb_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (data of a 1x1 image): refused before any decoding."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    ihdr = 8 + 8  # signature, then length + b"IHDR"
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    path.write_bytes(bytes(data))
    return path


def test_decompression_bomb_refused_before_decoding(tmp_path):
    bomb = _bomb_png(tmp_path / "bomb.png", 30000, 30000)  # 900 Mpx claimed, 70 bytes on disk
    with pytest.raises(DataError, match="decompression bomb"):
        open_image(bomb)
    with pytest.raises(DataError, match="Mpx limit"):
        open_image(_bomb_png(tmp_path / "b2.png", 12000, 9000))  # 108 Mpx: over odkit's 100 Mpx limit
    with pytest.raises(DataError, match="Mpx limit"):
        open_image(_small_png(tmp_path, 300, 200), max_pixels=50_000)


def _small_png(tmp_path: Path, w: int, h: int) -> Path:
    path = tmp_path / f"img_{w}x{h}.png"
    Image.new("RGB", (w, h), (10, 20, 30)).save(path)
    return path


def test_bad_model_folders(tmp_path, model_dir):
    with pytest.raises(OdkitError, match="not found"):
        Detector(tmp_path / "nope")
    with pytest.raises(OdkitError, match="not an odkit export folder"):
        Detector(tmp_path)
    (tmp_path / "export_info.json").write_text("{broken")
    with pytest.raises(OdkitError, match="cannot read export_info.json"):
        Detector(tmp_path)
    info = json.loads((model_dir / "export_info.json").read_text())
    (tmp_path / "export_info.json").write_text(json.dumps(info))
    with pytest.raises(OdkitError, match="model.onnx listed in export_info.json is missing"):
        Detector(tmp_path, "onnx")
    (tmp_path / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(OdkitError, match="cannot load the ONNX model"):
        Detector(tmp_path, "onnx")
    with pytest.raises(OdkitError, match="unknown backend"):
        Detector(model_dir, "tflite")


def test_torchscript_backend_matches_onnx(model_dir):
    pixels = _photo(100, 60)
    a = Detector(model_dir, "onnx", min_score=0.3).detect(pixels)
    b = Detector(model_dir, "torchscript", min_score=0.3).detect(pixels)
    assert len(a) == len(b) > 0
    for x, y in zip(a, b):
        assert x.class_id == y.class_id and abs(x.score - y.score) < 1e-4
        assert np.allclose(x.box, y.box, atol=1e-3)


def test_draw_detections_marks_pixels():
    img = np.zeros((100, 200, 3), np.uint8)
    dets = [Detection(1, "cat", 0.9, (0.1, 0.1, 0.5, 0.6))]
    out = np.asarray(draw_detections(img, dets))
    assert out.shape == img.shape
    assert out[50, 20:120].any()  # left edge of the box at x = 20 px ... some row inside has colour
    assert (out[30:45, 40:100] == 0).all()  # interior untouched away from the label
    assert not draw_detections(img, []).getbbox()
