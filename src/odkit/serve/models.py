"""Served models: an export folder opened with onnxruntime, its name and TF Serving signature metadata."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from odkit.errors import OdkitError
from odkit.inference.detector import INFO_FILE, Detector

SIGNATURE = "serving_default"
VERSION = "1"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ORT_TO_TF = {
    "tensor(uint8)": "DT_UINT8", "tensor(float)": "DT_FLOAT", "tensor(int64)": "DT_INT64",
    "tensor(int32)": "DT_INT32", "tensor(double)": "DT_DOUBLE", "tensor(string)": "DT_STRING",
}  # fmt: skip


@dataclass
class ServedModel:
    """One exported model served under ``name``; ``max_batch`` is 1 when the export has a fixed batch."""

    name: str
    path: Path
    detector: Detector
    max_batch: int
    dynamic_batch: bool
    signature: dict[str, Any] = field(default_factory=dict)

    @property
    def input_name(self) -> str:
        return str(self.detector.info.get("input_name", "input_tensor"))

    @property
    def input_is_float(self) -> bool:
        return self.detector.input_dtype.__name__ == "float32"

    def classes(self) -> list[dict[str, Any]]:
        return [{"id": cid, "name": name} for cid, name in sorted(self.detector.class_names.items())]

    def status(self) -> dict[str, Any]:
        """GET /v1/models/NAME, as TF Serving answers it."""
        return {"model_version_status": [
            {"version": VERSION, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]}  # fmt: skip

    def metadata(self) -> dict[str, Any]:
        """GET /v1/models/NAME/metadata: TF Serving's signature_def, plus odkit's label map and export info."""
        info = self.detector.info
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": VERSION},
            "metadata": {
                "signature_def": {"signature_def": {SIGNATURE: self.signature}},
                "label_map": self.classes(),
                "odkit": {
                    "input_type": info.get("input_type"), "input_size": info.get("input_size"),
                    "num_classes": info.get("num_classes"), "dynamic_batch": self.dynamic_batch,
                    "max_batch": self.max_batch, "odkit_version": info.get("odkit_version"),
                },
            },
        }


def _tensor_info(name: str, ort_type: str, shape: Sequence[Any]) -> dict[str, Any]:
    dims = [{"size": str(d) if isinstance(d, int) else "-1", "name": ""} for d in shape]
    return {"dtype": _ORT_TO_TF.get(ort_type, "DT_INVALID"), "tensor_shape": {"dim": dims, "unknown_rank": False},
            "name": f"{SIGNATURE}_{name}:0"}


def _signature(detector: Detector) -> dict[str, Any]:
    session = detector.backend.session  # type: ignore[union-attr]  # serve always uses the ONNX backend
    return {
        "inputs": {i.name: _tensor_info(i.name, i.type, i.shape) for i in session.get_inputs()},
        "outputs": {o.name: _tensor_info(o.name, o.type, o.shape) for o in session.get_outputs()},
        "method_name": "tensorflow/serving/predict",
        "defaults": {},
    }


def load_model(name: str, path: str | os.PathLike[str], *, max_batch: int, num_threads: int,
               max_pixels: int) -> ServedModel:
    """Open ``path`` with onnxruntime (OdkitError naming the problem otherwise)."""
    if not NAME_RE.match(name):
        raise OdkitError(f"model name {name!r} is not usable in a URL",
                         hint="use letters, digits, '_', '.' and '-' (--model NAME=DIR)")
    detector = Detector(path, "onnx", min_score=0.5, max_boxes=100, num_threads=num_threads,
                        max_pixels=max_pixels)
    dynamic = bool((detector.info["formats"].get("onnx") or {}).get("dynamic_batch"))
    return ServedModel(name, Path(path), detector, max_batch if dynamic else 1, dynamic, _signature(detector))


def resolve_model_specs(specs: Sequence[str], model_name: str | None) -> list[tuple[str, Path]]:
    """``--model`` values (DIR, NAME=DIR, or a folder of export folders) -> unique (name, dir) pairs."""
    if not specs:
        raise OdkitError("give at least one --model EXPORT_DIR")
    pairs: list[tuple[str, Path]] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and NAME_RE.match(name) and not Path(spec).exists():
            pairs.append((name, Path(rest)))
            continue
        path = Path(spec)
        if path.is_dir() and not (path / INFO_FILE).exists():
            subs = sorted(p for p in path.iterdir() if p.is_dir() and (p / INFO_FILE).is_file())
            if subs:
                pairs.extend((p.name, p) for p in subs)
                continue
        pairs.append((path.resolve().name or "model", path))
    if model_name is not None:
        if len(pairs) != 1:
            raise OdkitError("--model_name needs exactly one model", hint="name each one with --model NAME=DIR")
        pairs = [(model_name, pairs[0][1])]
    seen: set[str] = set()
    for name, _ in pairs:
        if name in seen:
            raise OdkitError(f"two models are named {name!r}", hint="name them with --model NAME=DIR")
        seen.add(name)
    return pairs
