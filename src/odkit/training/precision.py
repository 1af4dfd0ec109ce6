"""--precision auto|fp32|bf16|fp16 -> autocast dtype and whether a GradScaler is needed."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from odkit.errors import OdkitError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Precision:
    name: str  # fp32 | bf16 | fp16
    dtype: torch.dtype | None  # autocast dtype, None for fp32
    use_scaler: bool


def resolve_precision(requested: str, device: torch.device, use_bfloat16: bool = False) -> Precision:
    """auto: bf16 on CUDA when supported (else fp16 + GradScaler); on CPU fp32 unless use_bfloat16."""
    if requested not in PRECISIONS:
        raise OdkitError(f"unknown precision {requested!r}", where="--precision", hint="use " + "|".join(PRECISIONS))
    name = requested
    if name == "auto":
        if device.type == "cuda":
            name = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        else:
            name = "bf16" if use_bfloat16 else "fp32"
    if name == "fp32":
        return Precision("fp32", None, False)
    if name == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise OdkitError("this GPU does not support bfloat16", where="--precision", hint="use fp16 or fp32")
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)
