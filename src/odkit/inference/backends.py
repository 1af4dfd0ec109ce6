"""Runtimes for exported graphs: onnxruntime (no torch) and TorchScript (imports torch when used)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from odkit.errors import OdkitError
from odkit.runtime import keep_freed_memory, plan_threads

BACKENDS = ("auto", "onnx", "torchscript")


class OnnxBackend:
    """Runs model.onnx with onnxruntime on the CPU."""

    name = "onnx"

    def __init__(self, path: Path, input_name: str, output_names: Sequence[str], num_threads: int = 0) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise OdkitError("onnxruntime is not installed", hint="pip install onnxruntime (or odkit[infer])") from None
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        # all graph optimisations (constant folding, conv + batch-norm / activation fusion, layout transforms)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.intra_op_num_threads = num_threads or plan_threads("infer").threads  # the cores actually available
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OdkitError(f"cannot load the ONNX model: {msg}", where=str(path), hint="re-run odkit export") from None
        self.input_name = input_name
        self.output_names = list(output_names)

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: images})))


class TorchScriptBackend:
    """Runs model.torchscript.pt with torch.jit (needs torch and torchvision for the NMS op)."""

    name = "torchscript"

    def __init__(self, path: Path, output_names: Sequence[str], num_threads: int = 0) -> None:
        try:
            import torch
            import torchvision  # noqa: F401 - registers torchvision::nms used by the graph
        except ImportError:
            raise OdkitError(
                "the TorchScript backend needs torch and torchvision", hint="use --backend onnx"
            ) from None
        import warnings

        torch.set_num_threads(num_threads or plan_threads("infer").threads)
        keep_freed_memory()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError / ValueError variants
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OdkitError(f"cannot load the TorchScript model: {msg}", where=str(path), hint="re-run odkit export") from None
        self.module.eval()
        self.output_names = list(output_names)
        self._torch = torch

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        with self._torch.no_grad():
            outs = self.module(self._torch.from_numpy(images))
        return {n: t.numpy() for n, t in zip(self.output_names, outs)}
