"""Input pipeline: records -> decoded, augmented, resized, batched tensors (see docs/ARCHITECTURE.md).

`build_input_loader` and `build_image_resizer` are imported lazily, so `import odkit.inputs` does not load torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_image_resizer", "build_input_loader"]


def __getattr__(name: str) -> Any:
    if name == "build_input_loader":
        from odkit.inputs.builder import build_input_loader

        return build_input_loader
    if name == "build_image_resizer":
        from odkit.inputs.resizers import build_image_resizer

        return build_image_resizer
    raise AttributeError(f"module 'odkit.inputs' has no attribute {name!r}")
