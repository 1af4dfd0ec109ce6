"""Fine-tuning (TrainConfig.fine_tune_checkpoint / fine_tune_checkpoint_type) and variable freezing.

Types (as the TF OD API; "" means ``detection`` if from_detection_checkpoint else ``classification``):

- ``detection``: every tensor whose name and shape match is loaded; the rest (e.g. the class head when
  num_classes differ) keeps its fresh initialisation.
- ``classification``: backbone only. Names under ``model.backbone_param_prefixes`` are matched either in
  full or relative to the prefix, so torchvision-/timm-style backbone state dicts load directly.
- ``full``: every model tensor must be present with the same shape.

Sources: an odkit checkpoint (``D`` or ``D/ckpt-N``), ``.safetensors``, ``.pth``/``.pt``/``.bin``
(``torch.load(weights_only=True)``) or ``torchvision://<model name>`` (ImageNet weights from torchvision,
downloaded into the torch hub cache only with ``allow_download=True``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odkit.checkpoints import safe_torch_load
from odkit.errors import ConfigError, OdkitError, UnsupportedError

FINE_TUNE_TYPES = ("detection", "classification", "full")
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_STRIP_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


@dataclass
class FineTuneReport:
    source: str
    kind: str
    loaded: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)
    missing: list[str] = field(default_factory=list)  # target tensors with no source
    unused: int = 0  # source tensors nothing asked for

    def summary(self) -> str:
        text = (
            f"fine_tune_checkpoint ({self.kind}) {self.source}: loaded {len(self.loaded)} tensors, "
            f"skipped {len(self.skipped)}, missing {len(self.missing)}, unused in checkpoint {self.unused}"
        )
        if self.skipped:
            name, why = self.skipped[0]
            text += f"; e.g. skipped {name} ({why})"
        return text


def _tensors_only(obj: Mapping[str, Any], where: str) -> dict[str, torch.Tensor]:
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    out = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not out:
        raise OdkitError("no tensors found in the file", where=where, hint="pass a state dict (.pth/.safetensors)")
    return out


def _torchvision_state_dict(name: str, allow_download: bool) -> dict[str, torch.Tensor]:
    from torch.hub import get_dir
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(name).DEFAULT
    except (ValueError, KeyError):
        raise ConfigError(
            f"unknown torchvision model {name!r}", where="train_config.fine_tune_checkpoint"
        ) from None
    cached = Path(get_dir()) / "checkpoints" / os.path.basename(weights.url)
    if not cached.is_file() and not allow_download:
        raise OdkitError(
            f"torchvision weights {name} are not in the local cache ({cached})",
            where="train_config.fine_tune_checkpoint",
            hint="pass --allow_download to fetch them, or give a local .pth/.safetensors path",
        )
    try:
        state = weights.get_state_dict(progress=True, map_location="cpu", weights_only=True)
    except Exception as exc:  # network or file problems: one line for the user
        raise OdkitError(f"cannot load torchvision weights {name}: {exc}".splitlines()[0]) from None
    return _tensors_only(state, str(cached))


def read_source_state_dict(path: str, allow_download: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a fine-tune source (see module doc)."""

    if path.startswith("torchvision://"):
        return _torchvision_state_dict(path.removeprefix("torchvision://"), allow_download)
    p = Path(path)
    if Path(path + ".index").is_file() or p.suffix == ".index" or ".data-" in p.name:
        raise UnsupportedError(
            "TensorFlow checkpoints cannot be read",
            where=path,
            hint="use an odkit checkpoint, a torchvision/timm .pth or a .safetensors file",
        )
    if p.is_dir() or p.name == "checkpoint":
        from odkit.checkpoints import read_state_dict

        return read_state_dict(p)
    if not p.is_file():
        raise OdkitError(
            "fine_tune_checkpoint not found",
            where=path,
            hint="fix train_config.fine_tune_checkpoint (an odkit checkpoint, .pth or .safetensors)",
        )
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise OdkitError(f"cannot read safetensors: {exc}", where=path) from None
    obj = safe_torch_load(p, "checkpoint")
    if not isinstance(obj, Mapping):
        raise OdkitError("file does not hold a state dict", where=path)
    return _tensors_only(obj, path)


# backbone-relative odkit name prefix -> torchvision spelling (ResNet stem)
_TORCHVISION_ALIASES = (("stem.0.", "conv1."), ("stem.1.", "bn1."))


def _candidates(name: str, prefixes: Sequence[str]) -> list[str]:
    out = [name]
    for p in prefixes:
        if name.startswith(p):
            rel = name[len(p) :]
            rels = [rel] + [alias + rel[len(ours) :] for ours, alias in _TORCHVISION_ALIASES if rel.startswith(ours)]
            for r in rels:
                out.append(r)
                out.extend(s + r for s in _STRIP_PREFIXES)
    return out


def fine_tune_type(train_config: Any) -> str:
    kind = train_config.fine_tune_checkpoint_type
    if not kind:
        kind = "detection" if train_config.from_detection_checkpoint else "classification"
    if kind not in FINE_TUNE_TYPES:
        raise UnsupportedError(
            f"fine_tune_checkpoint_type {kind!r} is not supported",
            where="train_config.fine_tune_checkpoint_type",
            hint="use one of: " + ", ".join(FINE_TUNE_TYPES),
        )
    return kind


def load_fine_tune(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    kind: str,
    source_name: str = "",
) -> FineTuneReport:
    """Copy matching tensors of ``source`` into ``model`` by the rules of ``kind``."""
    target = model.state_dict()
    report = FineTuneReport(source=source_name, kind=kind)
    if kind == "classification":
        prefixes = tuple(getattr(model, "backbone_param_prefixes", ()) or ())
        if not prefixes:
            raise UnsupportedError(
                "this model does not name its backbone, so a classification checkpoint cannot be mapped",
                where="train_config.fine_tune_checkpoint_type",
                hint="use detection or full",
            )
        names = [k for k in target if k.startswith(prefixes)]
    else:
        prefixes = ()
        names = list(target)
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    for k in names:
        src_key = next((c for c in _candidates(k, prefixes) if c in source), None)
        if src_key is None:
            report.missing.append(k)
            continue
        used.add(src_key)
        v = source[src_key]
        if tuple(v.shape) != tuple(target[k].shape):
            report.skipped.append((k, f"shape {tuple(v.shape)} in checkpoint vs {tuple(target[k].shape)}"))
            continue
        new_state[k] = v.to(target[k].dtype)
        report.loaded.append(k)
    report.unused = len([k for k in source if k not in used])
    if kind == "full" and (report.missing or report.skipped):
        bad = report.missing[0] if report.missing else report.skipped[0][0]
        raise OdkitError(
            f"full fine-tune checkpoint does not match the model ({len(report.missing)} missing, "
            f"{len(report.skipped)} shape mismatches, e.g. {bad!r})",
            where=source_name,
            hint="use fine_tune_checkpoint_type: detection to load only what matches",
        )
    if not report.loaded:
        raise OdkitError(
            f"no tensor of the fine-tune checkpoint matches the model ({kind})",
            where=source_name,
            hint="check fine_tune_checkpoint and fine_tune_checkpoint_type",
        )
    model.load_state_dict(new_state, strict=False)
    return report


def apply_fine_tune(model: nn.Module, train_config: Any, allow_download: bool = False) -> FineTuneReport | None:
    """Load TrainConfig.fine_tune_checkpoint into ``model`` (None when not set)."""
    path = train_config.fine_tune_checkpoint
    if not path:
        return None
    kind = fine_tune_type(train_config)
    source = read_source_state_dict(path, allow_download=allow_download)
    return load_fine_tune(model, source, kind, source_name=path)


def _compile(patterns: Sequence[str], field_name: str) -> list[re.Pattern[str]]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as exc:
            raise ConfigError(f"bad regular expression {p!r}: {exc}", where=f"train_config.{field_name}") from None
    return out


def apply_trainable_filters(
    model: nn.Module, update_trainable_variables: Sequence[str] = (), freeze_variables: Sequence[str] = ()
) -> list[str]:
    """Freeze parameters (requires_grad=False) as TF's slim.filter_variables: include if any
    update_trainable_variables regex matches (re.search; all when empty), exclude if a freeze_variables
    regex matches. Returns the frozen parameter names."""
    include = _compile(update_trainable_variables, "update_trainable_variables")
    exclude = _compile(freeze_variables, "freeze_variables")
    frozen = []
    for name, p in model.named_parameters():
        keep = (not include or any(r.search(name) for r in include)) and not any(r.search(name) for r in exclude)
        if not keep:
            p.requires_grad_(False)
            frozen.append(name)
    return frozen
