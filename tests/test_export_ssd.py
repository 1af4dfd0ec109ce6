"""`odkit export` of the real SSD (MobileNet v2 FPN-lite demo config at 64x64) and agreement on real images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from odkit.cli import main
from odkit.export.compare import detection_differences
from odkit.inference.detector import Detector
from odkit.inference.images import load_image

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "src" / "odkit" / "configs" / "ssd_mobilenet_v2_fpnlite_128x128_demo.config"
SIZE = 64


def _randomize(model: torch.nn.Module) -> None:
    """Untrained SSDs give (nearly) the same score everywhere (std 0.01 init, prior bias -4.6), so NMS has
    nothing but ties. Re-draw every conv with variance-preserving (He) init and zero the biases so that scores
    spread over (0, 1) and the comparison above 0.3 has distinct detections to compare."""
    torch.manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                torch.nn.init.zeros_(module.bias)


@pytest.fixture(scope="module")
def ssd_export(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from odkit.builders.model_builder import build_model
    from odkit.checkpoints import save_checkpoint
    from odkit.config import load, save

    tmp = tmp_path_factory.mktemp("ssd")
    label_map = tmp / "label_map.pbtxt"
    label_map.write_text('item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" display_name: "Dog" }\n')
    config = load(DEMO_CONFIG)
    config.model.ssd.num_classes = 2
    config.model.ssd.image_resizer.fixed_shape_resizer.height = SIZE
    config.model.ssd.image_resizer.fixed_shape_resizer.width = SIZE
    config.train_input_reader.label_map_path = str(label_map)
    del config.eval_input_reader[:]
    pipeline = tmp / "pipeline.config"
    save(config, pipeline)
    torch.manual_seed(0)
    model = build_model(config.model, is_training=False).eval()
    _randomize(model)
    state = model.state_dict()
    ema = {k: (v * 0.5 if v.is_floating_point() and "class" in k else v) for k, v in state.items()}
    save_checkpoint(tmp / "train", 7, state, ema_state=ema)
    out = tmp / "exported"
    rc = main(["export", "--pipeline_config_path", str(pipeline), "--trained_checkpoint_dir", str(tmp / "train"),
               "--output_directory", str(out), "--allow_unsupported"])
    assert rc == 0
    return {"out": out, "model": model, "config": config, "tmp": tmp, "pipeline": pipeline}


def test_export_folder(ssd_export):
    out = ssd_export["out"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint", "export_info.json", "label_map.pbtxt", "model.onnx", "model.torchscript.pt",
                     "pipeline.config"]
    info = json.loads((out / "export_info.json").read_text())
    assert info["architecture"] == "ssd" and info["input_size"] == [SIZE, SIZE]
    assert [c["display_name"] for c in info["classes"]] == ["cat", "Dog"]
    assert info["checkpoint"]["step"] == 7 and info["checkpoint"]["use_ema"] is False
    src = ssd_export["tmp"] / "train" / "ckpt-7" / "model.safetensors"
    assert (out / "checkpoint" / "ckpt-7" / "model.safetensors").read_bytes() == src.read_bytes()
    assert 'model_checkpoint_path: "ckpt-7"' in (out / "checkpoint" / "checkpoint").read_text()
    from odkit.config import load

    assert load(out / "pipeline.config").model.ssd.num_classes == 2
    ops = {n.op_type for n in onnx.load(str(out / "model.onnx")).graph.node}
    assert "NonMaxSuppression" in ops or "Loop" in ops or "If" in ops


def test_onnx_runtime_folds_every_same_pad_into_its_conv(ssd_export, tmp_path):
    """The network input is fixed, so SAME pads are constants and onnxruntime's PadFusion removes every Pad
    before a Conv (the MobileNet v2 backbone has stride-2 SAME convolutions); no node keeps an empty trailing
    input."""
    import onnxruntime as ort

    def pads_into_convs(graph) -> list[str]:
        consumers: dict[str, list[str]] = {}
        for n in graph.node:
            for i in n.input:
                consumers.setdefault(i, []).append(n.op_type)
        return [n.name for n in graph.node if n.op_type == "Pad" and "Conv" in consumers.get(n.output[0], [])]

    graph = onnx.load(str(ssd_export["out"] / "model.onnx")).graph
    assert len(pads_into_convs(graph)) >= 4
    assert all(not n.input or n.input[-1] != "" for n in graph.node)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(ssd_export["out"] / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    optimized = onnx.load(str(tmp_path / "optimized.onnx")).graph
    assert pads_into_convs(optimized) == []


def test_onnx_torchscript_eager_agree_on_real_images(ssd_export, shared_dir):
    from odkit.export.wrapper import ExportWrapper
    from odkit.inputs.resizers import build_image_resizer

    out, model = ssd_export["out"], ssd_export["model"]
    resizer = build_image_resizer(ssd_export["config"].model.ssd.image_resizer)
    info = json.loads((out / "export_info.json").read_text())
    wrapper = ExportWrapper(model, resizer, tuple(info["outputs"])).eval()
    paths = sorted((shared_dir / "datasets" / "oxford_pets_subset" / "images").glob("*.jpg"))[:2]
    paths += sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    onnx_det, ts_det = Detector(out, "onnx"), Detector(out, "torchscript")
    compared = 0
    for path in paths:
        pixels = load_image(path)
        with torch.no_grad():
            eager = {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(torch.from_numpy(pixels[None])))}
        compared += int((eager["detection_scores"] > 0.3).sum())
        for det in (onnx_det, ts_det):
            raw = det.detect_raw(path)
            assert detection_differences(eager, raw, min_score=0.3, box_tol=1e-3) == [], (path, det.backend.name)
            np.testing.assert_allclose(raw["raw_detection_scores"], eager["raw_detection_scores"], atol=1e-3)
    assert compared > 10, compared


def test_use_ema_exports_the_moving_average_weights(ssd_export):
    tmp = ssd_export["tmp"]
    out = tmp / "exported_ema"
    rc = main(["export", "--pipeline_config_path", str(ssd_export["pipeline"]), "--trained_checkpoint_dir",
               str(tmp / "train" / "ckpt-7"), "--output_directory", str(out), "--use_ema", "--formats", "onnx",
               "--skip_verify", "--allow_unsupported"])
    assert rc == 0
    ema_src = tmp / "train" / "ckpt-7" / "ema.safetensors"
    assert (out / "checkpoint" / "ckpt-7" / "model.safetensors").read_bytes() == ema_src.read_bytes()
    info = json.loads((out / "export_info.json").read_text())
    assert info["checkpoint"]["use_ema"] is True and list(info["formats"]) == ["onnx"]


def test_export_errors_exit_2(ssd_export, tmp_path, capsys):
    args = ["export", "--pipeline_config_path", str(ssd_export["pipeline"]), "--output_directory", str(tmp_path / "o"),
            "--allow_unsupported"]
    assert main([*args, "--trained_checkpoint_dir", str(tmp_path / "missing")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main([*args, "--trained_checkpoint_dir", str(ssd_export["tmp"] / "train"),
                 "--input_type", "encoded_image_string_tensor"]) == 2
    assert "image_tensor" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
