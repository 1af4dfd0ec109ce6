"""Write an export folder: model.onnx, model.torchscript.pt, export_info.json, label_map.pbtxt, ...

The folder is built under a temporary name next to ``output_dir`` and renamed into place at the end,
so a failed export never leaves a half-written folder.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from odkit.errors import OdkitError, UnsupportedError
from odkit.export.compare import match_detections, max_abs_diff
from odkit.export.wrapper import INPUT_NAME, INPUT_TYPES, ExportWrapper, available_outputs
from odkit.fileio import remove_stale_temporaries, temp_name
from odkit.models.hyperparams import static_same_padding
from odkit.version import __version__

FORMATS = ("onnx", "torchscript")
FILE_NAMES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
DEFAULT_OPSET = 17
MIN_OPSET, MAX_OPSET = 11, 21
INFO_FILE = "export_info.json"


@dataclass
class ExportResult:
    """What was written: the folder and the export_info.json content."""

    output_dir: Path
    info: dict[str, Any] = field(default_factory=dict)


def parse_formats(text: str | Sequence[str]) -> tuple[str, ...]:
    """'onnx,torchscript' -> ('onnx', 'torchscript'); unknown names raise OdkitError."""
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise OdkitError(f"unknown export format(s) {bad or text!r}", hint=f"use a comma list of {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items))


def check_input_type(input_type: str) -> None:
    """Refuse input types the graph cannot take."""
    if input_type not in INPUT_TYPES:
        raise OdkitError(f"unknown --input_type {input_type!r}", hint=f"use one of {', '.join(INPUT_TYPES)}")
    if input_type == "encoded_image_string_tensor":
        raise UnsupportedError(
            "--input_type encoded_image_string_tensor is not supported: ONNX and TorchScript have no image decoder",
            hint="export with --input_type image_tensor; `odkit predict` and odkit.Detector decode files with Pillow",
        )


def check_opset(opset: int) -> None:
    """Refuse ONNX opsets the exported graph cannot use."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise OdkitError(f"--opset {opset} is outside {MIN_OPSET}..{MAX_OPSET}",
                         hint=f"NonMaxSuppression needs opset >= 11; the default is {DEFAULT_OPSET}")


def _sample_images(input_type: str, sizes: Sequence[tuple[int, int]], batch: int = 1) -> list[torch.Tensor]:
    """Deterministic smooth test images (uint8 or float) of the given sizes, ``[batch, H, W, 3]``."""
    out = []
    for k, (h, w) in enumerate(sizes):
        yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
        planes = [np.sin(6 * xx + k + b) * np.cos(5 * yy - c) for b in range(batch) for c in range(3)]
        img = (np.stack(planes, -1).reshape(h, w, batch, 3).transpose(2, 0, 1, 3) * 127.5 + 127.5).round()
        t = torch.from_numpy(img.astype(np.uint8))
        out.append(t.to(torch.float32) if input_type == "float_image_tensor" else t)
    return out


def _eager(wrapper: ExportWrapper, images: torch.Tensor) -> dict[str, np.ndarray]:
    """Eager outputs, computed once per test image (the cache keeps the image alive so ids stay unique)."""
    cache: dict[int, tuple[torch.Tensor, dict[str, np.ndarray]]] = wrapper.__dict__.setdefault("_eager_cache", {})
    if id(images) not in cache:
        with torch.no_grad():
            cache[id(images)] = (images, {n: t.numpy() for n, t in zip(wrapper.output_names, wrapper(images))})
    return cache[id(images)][1]


RAW_TOLERANCE = 1e-3  # raw (pre-NMS) boxes and scores, exported vs eager


def _verify(
    fmt: str,
    run: Callable[[torch.Tensor], dict[str, np.ndarray]],
    wrapper: ExportWrapper,
    images: Sequence[torch.Tensor],
) -> dict[str, Any]:
    """Compare the exported graph with eager on ``images``; raise OdkitError when they disagree.

    Checks the raw (pre-NMS) outputs elementwise and the detections with score >= 0.3 as sets (class,
    score within 1e-3, box within 1e-3), so ties in NMS order do not matter.
    """
    report: dict[str, Any] = {"images": [list(im.shape) for im in images], "detections_compared": 0,
                              "max_box_diff": 0.0, "max_raw_diff": 0.0}
    for im in images:
        expected, actual = _eager(wrapper, im), run(im)
        problems, compared, worst = match_detections(expected, actual)
        for name in ("raw_detection_boxes", "raw_detection_scores"):
            if name in expected:
                diff = max_abs_diff(expected, actual, name)
                report["max_raw_diff"] = max(report["max_raw_diff"], diff)
                if not diff <= RAW_TOLERANCE:
                    problems.append(f"{name} differ by {diff:.3g}")
        if problems:
            raise OdkitError(
                f"the exported {fmt} graph disagrees with the eager model on a {list(im.shape)} input: {problems[0]}"
                f" ({len(problems)} problem(s))",
                hint="report this as an odkit bug; the model's code may not be traceable",
            )
        report["detections_compared"] += compared
        report["max_box_diff"] = max(report["max_box_diff"], worst)
    return report


def _export_onnx(
    wrapper: ExportWrapper, sample: torch.Tensor, path: Path, opset: int, dynamic_batch: bool
) -> None:
    axes: dict[str, dict[int, str]] = {INPUT_NAME: {1: "height", 2: "width"}}
    if dynamic_batch:
        axes[INPUT_NAME][0] = "batch"
        for name in wrapper.output_names:
            axes[name] = {0: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            (sample,),
            str(path),
            dynamo=False,  # the torch.export path cannot trace data-dependent NMS; the tracer maps it to NonMaxSuppression
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(wrapper.output_names),
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    _drop_trailing_empty_inputs(path)


def _drop_trailing_empty_inputs(path: Path) -> None:
    """Remove the empty trailing optional inputs the exporter writes (Pad's constant_value ''): the same graph
    per the ONNX spec, and onnxruntime's PadFusion (which folds a zero Pad into the following Conv, sparing
    the Pad and the layout reorders around it) refuses a Pad whose third input is present but empty."""
    import onnx

    model = onnx.load(str(path))
    changed = False
    for node in model.graph.node:
        while len(node.input) and node.input[-1] == "":
            node.input.pop()
            changed = True
    if changed:
        onnx.save(model, str(path))


def _onnx_runner(path: Path, output_names: Sequence[str]) -> Callable[[torch.Tensor], dict[str, np.ndarray]]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        return dict(zip(output_names, session.run(list(output_names), {INPUT_NAME: images.numpy()})))

    return run


def _export_torchscript(wrapper: ExportWrapper, sample: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(wrapper, (sample,), check_trace=False)
        torch.jit.save(traced, str(path))


def _torchscript_runner(path: Path, output_names: Sequence[str]) -> Callable[[torch.Tensor], dict[str, np.ndarray]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        module = torch.jit.load(str(path), map_location="cpu")

    def run(images: torch.Tensor) -> dict[str, np.ndarray]:
        with torch.no_grad():
            return {n: t.numpy() for n, t in zip(output_names, module(images))}

    return run


def _try_formats(
    fmt: str, wrapper: ExportWrapper, sample: torch.Tensor, path: Path, opset: int, checks: list[torch.Tensor],
    batch_check: torch.Tensor, verify: bool,
) -> dict[str, Any]:
    """Export one format, claiming a dynamic batch only when a batch of 2 agrees with eager.

    ONNX is exported with a dynamic batch axis first and re-exported with batch 1 when the check fails;
    a TorchScript trace is the same either way. Without ``verify`` the batch is recorded as fixed to 1.
    """
    names = wrapper.output_names
    if fmt == "torchscript":
        _export_torchscript(wrapper, sample, path)
        entry: dict[str, Any] = {"file": path.name, "dynamic_batch": False}
        if verify:
            runner = _torchscript_runner(path, names)
            entry["dynamic_batch"] = _batch_ok(fmt, runner, wrapper, batch_check)
            entry["verification"] = _verify(fmt, runner, wrapper, checks)
        return entry
    _export_onnx(wrapper, sample, path, opset, dynamic_batch=verify)
    entry = {"file": path.name, "dynamic_batch": False}
    if verify:
        runner = _onnx_runner(path, names)
        if _batch_ok(fmt, runner, wrapper, batch_check):
            entry["dynamic_batch"] = True
        else:
            _export_onnx(wrapper, sample, path, opset, dynamic_batch=False)
            runner = _onnx_runner(path, names)
        entry["verification"] = _verify(fmt, runner, wrapper, checks)
    return entry


def _batch_ok(
    fmt: str, runner: Callable[[torch.Tensor], dict[str, np.ndarray]], wrapper: ExportWrapper, batch: torch.Tensor
) -> bool:
    try:
        _verify(fmt, runner, wrapper, [batch])
    except Exception:  # noqa: BLE001 - any failure (error or mismatch) means the graph is per-image only
        return False
    return True


def _resolve_output_dir(output_dir: Path) -> None:
    if output_dir.exists() and not output_dir.is_dir():
        raise OdkitError(f"--output_directory {output_dir} exists and is not a folder")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not (output_dir / INFO_FILE).is_file():
        raise OdkitError(
            f"--output_directory {output_dir} is not empty and is not an odkit export folder",
            hint="choose a new or empty folder",
        )


def _install(tmp: Path, output_dir: Path) -> None:
    """Move the finished temp folder into place, replacing a previous export atomically enough."""
    old = temp_name(output_dir.with_name(output_dir.name + ".old"))
    if output_dir.exists():
        os.replace(output_dir, old)
    os.replace(tmp, output_dir)
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def export_model(
    model: nn.Module,
    resizer: nn.Module,
    output_dir: str | os.PathLike[str],
    *,
    input_type: str = "image_tensor",
    formats: Sequence[str] = FORMATS,
    opset: int = DEFAULT_OPSET,
    classes: Sequence[dict[str, Any]] | None = None,
    extra_files: Callable[[Path], None] | None = None,
    extra_info: dict[str, Any] | None = None,
    verify: bool = True,
    log: Callable[[str], None] = lambda _msg: None,
) -> ExportResult:
    """Export ``model`` (DetectionModel contract) with ``resizer`` in front to ``output_dir``.

    ``classes``: [{"id", "name", "display_name"}] (generic names when None). ``extra_files(tmp_dir)``
    writes more files (pipeline.config, checkpoint/, label_map.pbtxt) into the folder before it is
    renamed into place. Each format is checked against eager on test images unless ``verify`` is False.
    """
    check_input_type(input_type)
    formats = parse_formats(formats)
    check_opset(opset)
    output_dir = Path(output_dir)
    _resolve_output_dir(output_dir)
    model.eval()
    resizer.eval()
    num_classes = int(model.num_classes)
    if classes is None:
        classes = [{"id": i, "name": f"class_{i}", "display_name": f"class_{i}"} for i in range(1, num_classes + 1)]
    input_size = tuple(getattr(model, "input_size", None) or (320, 320))
    h, w = int(input_size[0]), int(input_size[1])
    # Trace at a size other than the model input so the resize is in the graph; check other sizes.
    sample = _sample_images(input_type, [(h + h // 4 + 3, w - w // 8 + 5)])[0]
    checks = _sample_images(input_type, [(h, w), (h // 2 + 7, w + w // 3 + 1)])
    batch_check = _sample_images(input_type, [(h + 5, w + 3)], batch=2)[0]
    outputs = available_outputs(model, resizer, sample)
    wrapper = ExportWrapper(model, resizer, outputs).eval()

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output_dir.parent)  # left by a killed export (named with its PID)
    tmp = temp_name(output_dir)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        files: dict[str, Any] = {}
        # a fixed network input size (the resizer's): constant SAME pads, folded into the convolutions
        fixed = getattr(resizer, "fixed_output_size", None) is not None
        for fmt in formats:
            log(f"exporting {fmt} ...")
            with static_same_padding(fixed):
                files[fmt] = _try_formats(
                    fmt, wrapper, sample, tmp / FILE_NAMES[fmt], opset, checks, batch_check, verify
                )
            log(f"  {FILE_NAMES[fmt]}: dynamic batch {files[fmt]['dynamic_batch']}, verified {verify}")
        if extra_files is not None:
            extra_files(tmp)
        if not (tmp / "label_map.pbtxt").exists():
            write_label_map(tmp / "label_map.pbtxt", classes)
        info = {
            "odkit_version": __version__,
            "format_version": 1,
            "input_type": input_type,
            "input_name": INPUT_NAME,
            "input_dtype": "float32" if input_type == "float_image_tensor" else "uint8",
            "input_layout": "NHWC",
            "input_size": [h, w],
            "num_classes": num_classes,
            "classes": [dict(c) for c in classes],
            "opset": opset if "onnx" in formats else None,
            "outputs": list(outputs),
            "formats": files,
            **(extra_info or {}),
        }
        (tmp / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n")
        _install(tmp, output_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportResult(output_dir, info)


def write_label_map(path: Path, classes: Sequence[dict[str, Any]]) -> None:
    """Write a TF OD API label_map.pbtxt."""
    lines = []
    for c in classes:
        lines.append("item {")
        lines.append(f"  id: {int(c['id'])}")
        lines.append(f"  name: {json.dumps(str(c['name']))}")
        if c.get("display_name"):
            lines.append(f"  display_name: {json.dumps(str(c['display_name']))}")
        lines.append("}")
    path.write_text("\n".join(lines) + "\n")
