"""The ``--device`` flag, parsed once for train, eval and export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from odkit.errors import OdkitError

if TYPE_CHECKING:
    import torch


def resolve_device(requested: str | None, flag: str = "--device") -> torch.device:
    """``None`` / ``auto``: cuda when available, else cpu. ``cpu``, ``cuda`` or ``cuda:N`` (N must exist);
    anything else is one OdkitError line."""
    import torch

    if requested in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(str(requested))
    except (RuntimeError, ValueError, TypeError):
        raise OdkitError(f"unknown device {str(requested)[:40]!r}", where=flag,
                         hint="use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise OdkitError(f"unsupported device {str(requested)[:40]!r}", where=flag, hint="use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise OdkitError(f"{flag} {requested} requested but no CUDA device is available",
                             hint="use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise OdkitError(f"{flag} {requested}: there are only {torch.cuda.device_count()} CUDA device(s)",
                             hint="use cuda:0 .. cuda:N-1")
    return dev
