"""odkit: the TensorFlow Object Detection API workflow on PyTorch, without TensorFlow.

Heavy submodules (torch) are imported lazily so that `odkit predict` and
``odkit.Detector`` work with only onnxruntime, numpy and Pillow installed.
"""

from __future__ import annotations

from typing import Any

from odkit.version import __version__

__all__ = ["__version__", "train", "Detector"]


def __getattr__(name: str) -> Any:
    # Imported on first use, not at module level: every `import odkit.<anything>` runs this file first, and
    # `odkit predict` / odkit.Detector must run without torch (odkit.train pulls it in).
    if name == "train":
        from odkit.workflows.train import train

        return train
    if name == "Detector":
        from odkit.inference.detector import Detector

        return Detector
    raise AttributeError(f"module 'odkit' has no attribute {name!r}")
