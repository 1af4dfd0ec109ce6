"""`odkit predict`: folders with bad files, json / csv output, and a run where torch cannot be imported."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_model import FixedResizer, TinyDetector

from odkit.cli import main
from odkit.errors import OdkitError
from odkit.export.exporter import export_model
from odkit.inference.predict import expand_image_paths

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("pred") / "model"
    export_model(TinyDetector(num_classes=2), FixedResizer(64, 64), out, formats=["onnx"],
                 classes=[{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}])
    return out


@pytest.fixture()
def image_dir(tmp_path: Path) -> Path:
    d = tmp_path / "imgs"
    d.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(d / "a.jpg")
    Image.fromarray(rng.integers(0, 255, (50, 40), dtype=np.uint8), mode="L").save(d / "b_gray.png")
    rgba = rng.integers(0, 255, (30, 30, 4), dtype=np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(d / "c_rgba.png")
    (d / "d_broken.jpg").write_bytes(b"\xff\xd8\xff this is not really a jpeg")
    (d / "readme.txt").write_text("ignored: not an image extension")
    return d


def test_folder_run_skips_bad_file_and_writes_json(model_dir, image_dir, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["predict", "--model", str(model_dir), "--images", str(image_dir), "--output_dir", str(out),
               "--min_score", "0.3", "--max_boxes", "4"])
    assert rc == 1  # one image failed, the others were processed
    records = json.loads((out / "detections.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["a.jpg", "b_gray.png", "c_rgba.png", "d_broken.jpg"]
    assert "d_broken.jpg" in records[3]["error"] and "detections" not in records[3]
    assert (records[0]["width"], records[0]["height"]) == (80, 60)
    assert (records[1]["width"], records[1]["height"]) == (40, 50)
    for r in records[:3]:
        assert 0 < len(r["detections"]) <= 4
        for d in r["detections"]:
            assert d["score"] >= 0.3 and d["class_name"] in ("cat", "dog") and d["class_id"] in (1, 2)
            assert len(d["box"]) == 4 and 0 <= d["box"][0] <= d["box"][2] <= 1
    assert sorted(p.name for p in out.iterdir()) == ["a.jpg", "b_gray.png", "c_rgba.png", "detections.json"]
    assert Image.open(out / "a.jpg").size == (80, 60)
    err = capsys.readouterr().err
    assert "[4/4]" in err and "skipped" in err


def test_csv_format_and_glob(model_dir, image_dir, tmp_path):
    out = tmp_path / "out"
    rc = main(["predict", "--model", str(model_dir), "--images", str(image_dir / "*.png"), "--output_dir", str(out),
               "--format", "csv", "--min_score", "0.3", "--no_draw"])
    assert rc == 0
    rows = list(csv.DictReader((out / "detections.csv").open()))
    assert {Path(r["image"]).name for r in rows} == {"b_gray.png", "c_rgba.png"}
    assert all(float(r["score"]) >= 0.3 and float(r["ymin"]) <= float(r["ymax"]) for r in rows)
    assert sorted(p.name for p in out.iterdir()) == ["detections.csv"]


def test_bad_arguments_exit_2(model_dir, tmp_path, capsys):
    assert main(["predict", "--model", str(tmp_path / "none"), "--images", str(tmp_path), "--output_dir",
                 str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["predict", "--model", str(model_dir), "--images", str(tmp_path / "*.jpg"), "--output_dir",
                 str(tmp_path / "o")]) == 2
    assert "no files match" in capsys.readouterr().err
    assert main(["predict", "--model", str(model_dir), "--images", str(tmp_path), "--output_dir",
                 str(tmp_path / "o"), "--min_score", "2"]) == 2
    with pytest.raises(OdkitError, match="no image files"):
        expand_image_paths(str(tmp_path))


def test_predict_works_when_torch_cannot_be_imported(model_dir, image_dir, tmp_path):
    shim = tmp_path / "shim"
    for name in ("torch", "torchvision"):
        (shim / name).mkdir(parents=True)
        (shim / name / "__init__.py").write_text(f"raise ImportError('{name} is blocked for this test')\n")
    out = tmp_path / "out"
    code = (
        "import sys\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\nelse:\n    sys.exit('torch was importable')\n"
        "from odkit.cli import main\n"
        f"rc = main(['predict', '--model', {str(model_dir)!r}, '--images', {str(image_dir / '*.*g')!r},"
        f" '--output_dir', {str(out)!r}, '--min_score', '0.3'])\n"
        "import odkit\n"
        "dets = odkit.Detector(" + repr(str(model_dir)) + ", min_score=0.3).detect(" + repr(str(image_dir / "a.jpg")) + ")\n"
        "assert dets and 'torch' not in sys.modules, sorted(m for m in sys.modules if 'torch' in m)\n"
        "sys.exit(rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shim), str(REPO / "src")])}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 1, proc.stderr  # 1: d_broken.jpg was skipped, the rest done
    records = json.loads((out / "detections.json").read_text())
    assert len(records) == 4 and sum("error" in r for r in records) == 1
    assert "Traceback" not in proc.stderr and "with onnx" in proc.stderr
