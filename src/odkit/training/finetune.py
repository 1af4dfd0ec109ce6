"""Fine-tuning (TrainConfig.fine_tune_checkpoint / fine_tune_checkpoint_type) and variable freezing.

Types (as the TF OD API's ``restore_from_objects``; "" means ``detection`` if from_detection_checkpoint else
``classification``):

- ``detection``: the feature extractor only (odkit: tensors under ``model.feature_extractor_param_prefixes``,
  i.e. backbone + FPN / BiFPN; TF: ``model/_feature_extractor``, for Faster R-CNN both feature-extractor
  models). Every such tensor must be in the checkpoint with the same shape; the heads keep their fresh
  initialisation. With ``load_all_detection_checkpoint_vars`` (TF1's meaning) every tensor whose name and
  shape match is loaded instead, heads included.
- ``classification``: backbone only. Names under ``model.backbone_param_prefixes`` are matched either in
  full or relative to the prefix, so torchvision-/timm-style backbone state dicts load directly.
- ``full``: every model tensor must be present with the same shape.

Sources: a TF2 object-based checkpoint (``ckpt-N`` prefix, a folder with a TF ``checkpoint`` file, a
SavedModel folder; see odkit.tfcompat), an odkit checkpoint (``D`` or ``D/ckpt-N``), ``.safetensors``,
``.pth``/``.pt``/``.bin`` (``torch.load(weights_only=True)``) or ``torchvision://<model name>`` (ImageNet
weights from torchvision, downloaded into the torch hub cache only with ``allow_download=True``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from odkit.checkpoints import read_state_dict, safe_torch_load
from odkit.errors import ConfigError, OdkitError, UnsupportedError
from odkit.models.base import restore_prefixes
from odkit.tfcompat import open_tf_checkpoint
from odkit.tfcompat.restore import check_full, is_tf_checkpoint, select_tf_tensors
from odkit.training.settings import FineTuneSettings, TrainSettings, fine_tune_settings

FINE_TUNE_REPORT = "fine_tune_report.json"  # in model_dir: the full lists behind the printed summary
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "module")
_STRIP_PREFIXES = ("module.", "model.", "backbone.", "_orig_mod.")


@dataclass
class FineTuneReport:
    """What a fine-tune restore did: model tensors restored / left fresh, checkpoint tensors skipped."""

    source: str
    kind: str
    scope: str = ""
    loaded: list[str] = field(default_factory=list)  # model tensors restored
    fresh: list[str] = field(default_factory=list)  # model tensors left as initialised
    skipped: list[tuple[str, str]] = field(default_factory=list)  # checkpoint tensors not restored (name, why)

    def summary(self, details: str | None = None) -> str:
        def few(names: Sequence[str]) -> str:
            return ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")

        text = f"fine_tune_checkpoint ({self.kind}"
        text += f": {self.scope})" if self.scope else ")"
        text += f" {self.source}: restored {len(self.loaded)} tensors"
        if self.loaded:
            text += f" ({few(self.loaded)})"
        text += f"; left fresh {len(self.fresh)}"
        if self.fresh:
            text += f" ({few(self.fresh)})"
        text += f"; skipped {len(self.skipped)} checkpoint tensors"
        if self.skipped:
            name, why = self.skipped[0]
            text += f" (e.g. {name}: {why})"
        if details:
            text += f"; full lists in {details}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fine_tune_checkpoint_type": self.kind,
            "scope": self.scope,
            "restored": list(self.loaded),
            "left_fresh": list(self.fresh),
            "skipped": [{"name": n, "reason": r} for n, r in self.skipped],
        }

    def write_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` atomically (the full lists behind :meth:`summary`)."""
        p = Path(path)
        tmp = p.with_name(f".{p.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        os.replace(tmp, p)


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
            "a TensorFlow checkpoint has no odkit tensor names of its own",
            where=path,
            hint="restore it with apply_fine_tune (it maps names through the model config) or convert it "
            "with `odkit convert-checkpoint`",
        )
    if p.is_dir() or p.name == "checkpoint":
        return read_state_dict(p)
    if not p.is_file():
        raise OdkitError(
            "fine_tune_checkpoint not found",
            where=path,
            hint="fix train_config.fine_tune_checkpoint (a TF2 ckpt-N prefix or saved_model/, an odkit "
            "checkpoint, .pth or .safetensors)",
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
    """fine_tune_checkpoint_type (from_detection_checkpoint when empty); refused when unknown."""
    return fine_tune_settings(train_config).kind


def _first_mismatch_error(name: str, have: tuple[int, ...], want: tuple[int, ...], count: int, kind: str,
                          where: str) -> OdkitError:
    return OdkitError(
        f"{kind} fine-tune checkpoint does not match the model: {name} has shape {have} in the checkpoint but "
        f"{want} in the model ({count} mismatch(es))",
        where=where,
        hint="use the pipeline.config the checkpoint was trained with"
        + (", or fine_tune_checkpoint_type: detection" if kind == "full" else ""),
    )


def load_fine_tune(
    model: nn.Module,
    source: Mapping[str, torch.Tensor],
    kind: str,
    source_name: str = "",
    load_all: bool = False,
) -> FineTuneReport:
    """Copy the tensors of ``source`` (odkit names) that ``kind`` restores into ``model`` (see module doc)."""
    target = model.state_dict()
    strict_shapes = kind in ("full", "detection") and not load_all
    if kind == "classification":
        prefixes = restore_prefixes(model, "classification")
        names = [k for k in target if k.startswith(prefixes)]
        scope = "backbone: " + ", ".join(p.rstrip(".") for p in prefixes)
    elif kind == "detection" and not load_all:
        prefixes = ()
        fe = restore_prefixes(model, "detection")
        names = [k for k in target if k.startswith(fe)]
        scope = "feature extractor: " + ", ".join(p.rstrip(".") for p in fe)
    else:
        prefixes = ()
        names = list(target)
        scope = "everything" if kind == "full" else "every tensor whose name and shape match"
    report = FineTuneReport(source=source_name, kind=kind, scope=scope)
    new_state: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    absent: list[str] = []
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = []
    for k in names:
        src_key = next((c for c in _candidates(k, prefixes) if c in source), None)
        if src_key is None:
            absent.append(k)
            continue
        used.add(src_key)
        v = source[src_key]
        if tuple(v.shape) != tuple(target[k].shape):
            mismatched.append((k, tuple(v.shape), tuple(target[k].shape)))
            report.skipped.append((src_key, f"shape {tuple(v.shape)} vs {tuple(target[k].shape)} in the model"))
            continue
        new_state[k] = v.to(target[k].dtype)
        report.loaded.append(k)
    if strict_shapes and mismatched:
        name, have, want = mismatched[0]
        raise _first_mismatch_error(name, have, want, len(mismatched), kind, source_name)
    if not report.loaded:
        raise OdkitError(
            f"no tensor of the fine-tune checkpoint matches the model ({kind})",
            where=source_name,
            hint="check fine_tune_checkpoint and fine_tune_checkpoint_type",
        )
    if strict_shapes and absent:
        raise OdkitError(
            f"{kind} fine-tune checkpoint does not match the model: {len(absent)} tensor(s) of the "
            f"{'model' if kind == 'full' else 'feature extractor'} are not in it (e.g. {absent[0]!r})",
            where=source_name,
            hint="use the pipeline.config the checkpoint was trained with",
        )
    report.fresh = [k for k in target if k not in new_state]
    outside = f"outside the restored part ({scope})"
    report.skipped += [(k, outside) for k in source if k not in used]
    model.load_state_dict(new_state, strict=False)
    return report


def load_tf_fine_tune(
    model: nn.Module, model_config: Any, path: str, kind: str, load_all: bool = False
) -> FineTuneReport:
    """Restore a TF2 object-based checkpoint with the TF OD API's semantics (odkit.tfcompat.restore)."""
    ckpt = open_tf_checkpoint(path)
    where = str(ckpt.prefix)
    sel = select_tf_tensors(model, model_config, ckpt, kind, load_all=load_all)
    if kind == "full" and not load_all:
        check_full(sel, where)
    elif sel.mismatched and not load_all:
        raise OdkitError(
            f"{kind} fine-tune checkpoint does not match the model: shapes differ for {sel.mismatched[0][2]} "
            f"({len(sel.mismatched)} mismatch(es) under {sel.scope})",
            where=where,
            hint="use the pipeline.config the checkpoint was trained with",
        )
    if kind == "detection" and not load_all:
        fe = restore_prefixes(model, "detection")
        gaps = [k for k in sel.fresh if k.startswith(fe)]
        if gaps:  # TF: assert_existing_objects_matched
            raise OdkitError(
                f"detection fine-tune checkpoint does not match the model: {len(gaps)} feature-extractor "
                f"tensor(s) have no value under {sel.scope} (e.g. {gaps[0]!r})",
                where=where,
                hint="use the pipeline.config the checkpoint was trained with (feature_extractor type, depth)",
            )
    if not sel.tensors:
        raise OdkitError(
            f"no variable of the TF checkpoint maps onto the model ({kind})",
            where=where,
            hint="check fine_tune_checkpoint and fine_tune_checkpoint_type",
        )
    model.load_state_dict(sel.tensors, strict=False)
    report = FineTuneReport(source=path, kind=kind, scope=sel.scope if not load_all else "every variable whose "
                            "shape matches", loaded=list(sel.tensors), fresh=list(sel.fresh))
    report.skipped += [(n, f"outside {sel.scope}") for n in sel.outside]
    report.skipped += [(tf, f"shapes differ: {text}") for _, tf, text in sel.mismatched]
    report.skipped += [(n, "nothing in this model maps to it") for n in sel.unmatched]
    return report


def _check_checkpoint_version(settings: FineTuneSettings, path: str) -> None:
    """fine_tune_checkpoint_version: TF2 object-based checkpoints are V2; an explicit V1 is refused as TF2 does."""
    if settings.version_v1:
        raise UnsupportedError(
            "fine_tune_checkpoint_version V1 (TF1 name-based checkpoints) is not supported",
            where="train_config.fine_tune_checkpoint_version",
            hint=f"{path} is a TF2 object-based checkpoint: set V2 (as the zoo configs do) or remove the field",
        )


def apply_fine_tune(
    model: nn.Module, train_config: Any, allow_download: bool = False, model_config: Any = None
) -> FineTuneReport | None:
    """Load TrainConfig.fine_tune_checkpoint into ``model`` (None when not set). ``model_config`` (the
    pipeline's ``model`` message) is needed to map the names of a TF checkpoint."""
    settings = train_config.fine_tune if isinstance(train_config, TrainSettings) else fine_tune_settings(train_config)
    path = settings.checkpoint
    if not path:
        return None
    kind, load_all = settings.kind, settings.load_all
    if is_tf_checkpoint(path):
        _check_checkpoint_version(settings, path)
        if model_config is None:
            raise UnsupportedError("restoring a TF checkpoint needs the model config", where=path)
        return load_tf_fine_tune(model, model_config, path, kind, load_all=load_all)
    source = read_source_state_dict(path, allow_download=allow_download)
    return load_fine_tune(model, source, kind, source_name=path, load_all=load_all)


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
