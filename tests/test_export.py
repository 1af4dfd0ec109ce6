"""odkit.export on the tiny built-in detector: files, graph contents, eager/ONNX/TorchScript agreement, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from tiny_model import FixedResizer, TinyDetector

from odkit.errors import OdkitError, UnsupportedError
from odkit.export.compare import detection_differences
from odkit.export.exporter import export_model, parse_formats
from odkit.export.wrapper import OUTPUT_NAMES, ExportWrapper
from odkit.inference.detector import Detector
from odkit.inference.images import load_image


def _tiny() -> tuple[TinyDetector, FixedResizer]:
    torch.manual_seed(0)
    return TinyDetector(num_classes=3, input_size=(64, 64)), FixedResizer(64, 64)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ExportWrapper]:
    model, resizer = _tiny()
    out = tmp_path_factory.mktemp("export") / "model"
    classes = [{"id": 1, "name": "cat", "display_name": "Cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "fox"}]
    result = export_model(model, resizer, out, classes=classes)
    assert result.output_dir == out
    return out, ExportWrapper(model, resizer, tuple(result.info["outputs"])).eval()


def _eager(wrapper: ExportWrapper, pixels: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        outs = wrapper(torch.from_numpy(pixels[None]))
    return {n: t.numpy() for n, t in zip(wrapper.output_names, outs)}


def test_export_folder_contents(exported):
    out, _ = exported
    names = sorted(p.name for p in out.iterdir())
    assert names == ["export_info.json", "label_map.pbtxt", "model.onnx", "model.torchscript.pt"]
    info = json.loads((out / "export_info.json").read_text())
    assert info["input_type"] == "image_tensor" and info["input_dtype"] == "uint8"
    assert info["input_size"] == [64, 64] and info["num_classes"] == 3
    assert info["outputs"] == list(OUTPUT_NAMES[:7])  # a box model: no masks / keypoints outputs
    assert [c["name"] for c in info["classes"]] == ["cat", "dog", "fox"]
    assert info["formats"]["onnx"]["verification"]["max_box_diff"] < 1e-4
    assert 'name: "dog"' in (out / "label_map.pbtxt").read_text()
    assert not list(out.parent.glob(".model.*")), "temporary folders left behind"


def test_onnx_graph_has_nms_and_tf_outputs(exported):
    out, _ = exported
    graph = onnx.load(str(out / "model.onnx")).graph
    ops: set[str] = set()

    def walk(g: onnx.GraphProto) -> None:
        for node in g.node:
            ops.add(node.op_type)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g)

    walk(graph)
    assert "NonMaxSuppression" in ops and "Resize" in ops
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES[:7])
    inp = graph.input[0]
    assert inp.name == "input_tensor" and inp.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = inp.type.tensor_type.shape.dim
    assert dims[1].dim_param == "height" and dims[2].dim_param == "width" and dims[3].dim_value == 3


def test_onnx_torchscript_eager_agree_on_real_images(exported, shared_dir):
    out, wrapper = exported
    images = sorted((shared_dir / "datasets" / "oxford_pets_subset" / "images").glob("*.jpg"))[:3]
    images += sorted((shared_dir / "datasets" / "raccoon" / "images").glob("*.jpg"))[:2]
    assert images
    onnx_det, ts_det = Detector(out, "onnx"), Detector(out, "torchscript")
    for path in images:
        pixels = load_image(path)
        eager = _eager(wrapper, pixels)
        for det in (onnx_det, ts_det):
            raw = det.detect_raw(path)
            assert raw["detection_boxes"].shape == (1, 20, 4)
            assert detection_differences(eager, raw, min_score=0.3, box_tol=1e-3) == [], (path, det.backend.name)
        assert int(eager["num_detections"][0]) > 0  # the comparison is not vacuous


def test_detections_boxes_are_normalized_to_the_original_image(exported):
    out, wrapper = exported
    pixels = np.zeros((90, 50, 3), np.uint8)
    pixels[:, 25:] = 255
    raw = Detector(out).detect_raw(pixels)
    n = int(raw["num_detections"][0])
    boxes = raw["detection_boxes"][0]
    assert n > 0 and np.all(boxes[:n] >= 0) and np.all(boxes[:n] <= 1)
    assert np.all(boxes[n:] == 0)  # zero padded beyond num_detections
    assert raw["raw_detection_scores"].shape == (1, 64, 3)
    assert detection_differences(_eager(wrapper, pixels), raw) == []


def test_float_image_tensor_export(tmp_path):
    model, resizer = _tiny()
    export_model(model, resizer, tmp_path / "f", input_type="float_image_tensor", formats=["onnx"])
    info = json.loads((tmp_path / "f" / "export_info.json").read_text())
    assert info["input_dtype"] == "float32" and list(info["formats"]) == ["onnx"]
    graph = onnx.load(str(tmp_path / "f" / "model.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    det = Detector(tmp_path / "f")
    pixels = np.random.default_rng(1).integers(0, 255, (40, 70, 3), dtype=np.uint8)
    ref = ExportWrapper(model, resizer, tuple(info["outputs"]))
    with torch.no_grad():
        expected = {n: t.numpy() for n, t in zip(ref.output_names, ref(torch.from_numpy(pixels[None]).float()))}
    assert detection_differences(expected, det.detect_raw(pixels)) == []


def test_encoded_string_input_refused(tmp_path):
    model, resizer = _tiny()
    with pytest.raises(UnsupportedError, match="encoded_image_string_tensor"):
        export_model(model, resizer, tmp_path / "e", input_type="encoded_image_string_tensor")
    assert not (tmp_path / "e").exists()


def test_failed_export_leaves_nothing(tmp_path):
    model, resizer = _tiny()

    def boom(_tmp: Path) -> None:
        raise OdkitError("disk full")

    with pytest.raises(OdkitError, match="disk full"):
        export_model(model, resizer, tmp_path / "x", formats=["onnx"], extra_files=boom)
    assert list(tmp_path.iterdir()) == []


def test_refuses_foreign_nonempty_folder_and_replaces_previous_export(tmp_path):
    model, resizer = _tiny()
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OdkitError, match="not an odkit export folder"):
        export_model(model, resizer, foreign, formats=["onnx"])
    assert (foreign / "notes.txt").read_text() == "mine"
    out = tmp_path / "again"
    export_model(model, resizer, out, formats=["torchscript"])
    export_model(model, resizer, out, formats=["onnx"])
    assert sorted(p.name for p in out.iterdir()) == ["export_info.json", "label_map.pbtxt", "model.onnx"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "foreign"]


def test_parse_formats():
    assert parse_formats("onnx, torchscript,onnx") == ("onnx", "torchscript")
    with pytest.raises(OdkitError, match="unknown export format"):
        parse_formats("onnx,tflite")
    model, resizer = _tiny()
    with pytest.raises(OdkitError, match="opset 9"):
        export_model(model, resizer, "/nonexistent/never/written", opset=9)


def test_keep_aspect_ratio_resizer_traces_for_any_size(tmp_path):
    from odkit.export.resize import TraceableKeepAspectRatio, export_resizer
    from odkit.inputs.resizers import IdentityResizer, KeepAspectRatioResizer

    ref = KeepAspectRatioResizer(64, 96, pad_to_max_dimension=True, per_channel_pad_value=[1.0, 2.0, 3.0])
    resizer = export_resizer(ref)
    assert isinstance(resizer, TraceableKeepAspectRatio)
    for h, w in [(50, 70), (120, 40), (33, 200), (96, 96)]:
        x = torch.rand(1, 3, h, w) * 255
        (a, sa), (b, sb) = ref(x), resizer(x)
        assert torch.equal(sa, sb) and torch.allclose(a, b)
    torch.manual_seed(0)
    model = TinyDetector(num_classes=2, input_size=(96, 96))
    result = export_model(model, resizer, tmp_path / "k")  # verification covers 3 input sizes per format
    assert result.info["formats"]["onnx"]["verification"]["max_box_diff"] < 1e-3
    wrapper = ExportWrapper(model, resizer, tuple(result.info["outputs"])).eval()
    pixels = np.random.default_rng(3).integers(0, 255, (30, 150, 3), dtype=np.uint8)
    for backend in ("onnx", "torchscript"):
        assert detection_differences(_eager(wrapper, pixels), Detector(tmp_path / "k", backend).detect_raw(pixels)) == []
    with pytest.raises(UnsupportedError, match="pad_to_max_dimension"):
        export_resizer(KeepAspectRatioResizer(64, 96))
    with pytest.raises(UnsupportedError, match="fixed model input size"):
        export_resizer(IdentityResizer())


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("size", [5, 6, 7])
def test_same_padding_conv_exports_with_the_eager_shape(tmp_path, size):
    """TF "SAME" padding for stride 2 computes ceil(h / s); written as -(-h // s) it exports to ONNX as a
    truncating Div and loses a row of padding on odd sizes (the SSD's last FPN level went 3x3 -> 2x2)."""
    import onnxruntime as ort

    from odkit.models.hyperparams import SameConv2d

    conv = SameConv2d(1, 1, 3, stride=2).eval()
    x = torch.rand(1, 1, size, size + 2)
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, (x,), str(path), dynamo=False, opset_version=17, input_names=["x"])
    out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        expected = conv(x).numpy()
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-5)
