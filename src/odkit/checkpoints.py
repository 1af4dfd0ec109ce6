"""Checkpoint folders written by `odkit train` and read by eval and export.

Layout (see docs/ARCHITECTURE.md "Checkpoints")::

    D/checkpoint                 TF-style text index (model_checkpoint_path / all_model_checkpoint_paths)
    D/ckpt-N/model.safetensors   model weights (state_dict names)
    D/ckpt-N/ema.safetensors     EMA weights (only with use_moving_average)
    D/ckpt-N/train_state.pt      optimizer, schedule step, RNG, data position (torch.load(weights_only=True))
    D/ckpt-N/meta.json           {"step": N, "odkit_version": ..., "complete": true}, written last

A checkpoint is written into ``D/.ckpt-N.tmp/`` and renamed to ``D/ckpt-N/`` when complete; the index
is rewritten atomically afterwards. Readers trust only folders whose meta.json says ``complete``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from odkit.errors import OdkitError
from odkit.fileio import atomic_write_text, fsync_dir
from odkit.version import __version__

if TYPE_CHECKING:
    import torch
    from torch import nn

MODEL_FILE = "model.safetensors"
EMA_FILE = "ema.safetensors"
TRAIN_STATE_FILE = "train_state.pt"
META_FILE = "meta.json"
INDEX_FILE = "checkpoint"
DEFAULT_KEEP = 7  # TF's CheckpointManager default (max_to_keep=7 in model_lib_v2)

_CKPT_RE = re.compile(r"^ckpt-(\d+)$")


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint folder."""

    step: int
    path: Path


def _read_meta(folder: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((folder / META_FILE).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(meta, dict) or meta.get("complete") is not True or not isinstance(meta.get("step"), int):
        return None
    return meta


def read_meta(ckpt_path: str | os.PathLike[str]) -> dict[str, Any]:
    """meta.json of a complete checkpoint folder (OdkitError if absent or incomplete)."""
    folder = resolve_checkpoint(ckpt_path)
    meta = _read_meta(folder)
    assert meta is not None  # resolve_checkpoint only returns complete folders
    return meta


def list_checkpoints(model_dir: str | os.PathLike[str]) -> list[Checkpoint]:
    """Complete checkpoints in ``model_dir``, oldest (lowest step) first."""
    d = Path(model_dir)
    if not d.is_dir():
        return []
    out: list[Checkpoint] = []
    for child in d.iterdir():
        m = _CKPT_RE.match(child.name)
        if not m or not child.is_dir():
            continue
        meta = _read_meta(child)
        if meta is None or not (child / MODEL_FILE).is_file():
            continue
        out.append(Checkpoint(step=int(meta["step"]), path=child))
    out.sort(key=lambda c: c.step)
    return out


def unreadable_checkpoints(model_dir: str | os.PathLike[str]) -> list[Path]:
    """``ckpt-N`` folders that are not complete checkpoints (unreadable or incomplete meta.json, no weights)."""
    d = Path(model_dir)
    if not d.is_dir():
        return []
    bad = [c for c in d.iterdir() if _CKPT_RE.match(c.name) and c.is_dir()
           and (_read_meta(c) is None or not (c / MODEL_FILE).is_file())]
    return sorted(bad, key=lambda c: int(_CKPT_RE.match(c.name).group(1)))  # type: ignore[union-attr]


def check_resumable(model_dir: str | os.PathLike[str]) -> None:
    """OdkitError when ``ckpt-N`` folders newer than the latest complete checkpoint are unreadable: resuming
    would silently restart from an older step (or step 0) and overwrite them."""
    latest = latest_checkpoint(model_dir)
    newer = [c for c in unreadable_checkpoints(model_dir)
             if latest is None or int(_CKPT_RE.match(c.name).group(1)) > latest.step]  # type: ignore[union-attr]
    if newer:
        names = ", ".join(c.name for c in newer[:5]) + (" ..." if len(newer) > 5 else "")
        raise OdkitError(
            f"checkpoint(s) {names} are unreadable (meta.json missing, corrupt or incomplete); resuming would "
            + (f"restart from {latest.path.name}" if latest else "restart at step 0") + " and overwrite them",
            where=str(model_dir), hint="repair or move them away, or use a new --model_dir",
        )


def latest_checkpoint(model_dir: str | os.PathLike[str]) -> Checkpoint | None:
    """The complete checkpoint with the highest step, or None."""
    ckpts = list_checkpoints(model_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder from ``D/ckpt-N``, a model dir (its latest) or the ``D/checkpoint`` index file."""
    p = Path(path)
    if p.is_file() and p.name == INDEX_FILE:
        p = p.parent
    if p.is_dir() and _read_meta(p) is not None and (p / MODEL_FILE).is_file():
        return p
    if p.is_dir():
        latest = latest_checkpoint(p)
        if latest is not None:
            return latest.path
        raise OdkitError(
            "no complete checkpoint found",
            where=str(p),
            hint="pass a folder written by `odkit train` (D or D/ckpt-N)",
        )
    raise OdkitError("checkpoint not found", where=str(p), hint="pass D or D/ckpt-N written by `odkit train`")


def read_state_dict(ckpt_path: str | os.PathLike[str], use_ema: bool = False) -> dict[str, torch.Tensor]:
    """The model (or EMA) tensors of a checkpoint, loaded on CPU from safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = resolve_checkpoint(ckpt_path)
    f = folder / (EMA_FILE if use_ema else MODEL_FILE)
    if not f.is_file():
        raise OdkitError(
            f"{f.name} not found" + (" (the run did not use use_moving_average)" if use_ema else ""),
            where=str(folder),
            hint="load the plain model weights instead" if use_ema else None,
        )
    try:
        return load_file(str(f), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise OdkitError(f"cannot read weights: {exc}", where=str(f)) from None


def load_weights(
    model: nn.Module,
    ckpt_path: str | os.PathLike[str],
    use_ema: bool = False,
    strict: bool = True,
) -> Checkpoint:
    """Load a checkpoint's model (or EMA) weights into ``model``; OdkitError on name/shape mismatch."""
    folder = resolve_checkpoint(ckpt_path)
    state = read_state_dict(folder, use_ema=use_ema)
    target = model.state_dict()
    bad_shape = [k for k, v in target.items() if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if bad_shape:
        k = bad_shape[0]
        raise OdkitError(
            f"tensor {k!r} has shape {tuple(state[k].shape)} in the checkpoint but {tuple(target[k].shape)} "
            f"in the model ({len(bad_shape)} mismatches)",
            where=str(folder),
            hint="use the pipeline.config the checkpoint was trained with",
        )
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]!r})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]!r})")
        raise OdkitError(
            "checkpoint does not match the model: " + ", ".join(parts),
            where=str(folder),
            hint="use the pipeline.config the checkpoint was trained with",
        )
    model.load_state_dict(state, strict=False)
    meta = _read_meta(folder) or {}
    return Checkpoint(step=int(meta.get("step", -1)), path=folder)


_OBJECT_REPR = re.compile(r"<[^<>]*? (?:object|at) (?:at )?0x[0-9a-fA-F]+>")


def safe_torch_load(path: str | os.PathLike[str], what: str = "file") -> Any:
    """``torch.load(path, weights_only=True)`` (never unpickles code); any failure is one OdkitError line
    naming ``path`` (no Python object reprs)."""
    import warnings

    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # pickle-protocol notices from the safe unpickler
            return torch.load(path, map_location="cpu", weights_only=True)
    except MemoryError:
        raise OdkitError(f"cannot read {what}: it declares more data than fits in memory", where=str(path)) from None
    except Exception as exc:  # the safe unpickler raises many types on crafted or truncated files
        text = _OBJECT_REPR.sub("<file>", str(exc)).splitlines()[0] if str(exc) else type(exc).__name__
        raise OdkitError(f"cannot read {what} (only weights_only state dicts are loaded): "
                         f"{type(exc).__name__}: {text[:200]}", where=str(path)) from None


def load_train_state(ckpt_path: str | os.PathLike[str]) -> dict[str, Any]:
    """train_state.pt of a checkpoint, loaded with ``torch.load(weights_only=True)``; {} if absent."""
    folder = resolve_checkpoint(ckpt_path)
    f = folder / TRAIN_STATE_FILE
    if not f.is_file():
        return {}
    state = safe_torch_load(f, "training state")
    if not isinstance(state, dict):
        raise OdkitError("training state is not a dict", where=str(f))
    return state


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cpu_tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage (tied weights)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in state.items()}


def write_index(model_dir: str | os.PathLike[str], ckpts: list[Checkpoint]) -> None:
    """Rewrite ``D/checkpoint`` (TF text index) atomically; oldest first, latest as model_checkpoint_path."""
    d = Path(model_dir)
    if not ckpts:
        return
    lines = [f'model_checkpoint_path: "{ckpts[-1].path.name}"']
    lines += [f'all_model_checkpoint_paths: "{c.path.name}"' for c in ckpts]
    atomic_write_text(d / INDEX_FILE, "\n".join(lines) + "\n")


def save_checkpoint(
    model_dir: str | os.PathLike[str],
    step: int,
    model_state: Mapping[str, torch.Tensor],
    *,
    ema_state: Mapping[str, torch.Tensor] | None = None,
    train_state: Mapping[str, Any] | None = None,
    extra_meta: Mapping[str, Any] | None = None,
    keep: int = DEFAULT_KEEP,
) -> Checkpoint:
    """Write ``D/ckpt-<step>`` atomically, update the index, delete all but the newest ``keep``."""
    import torch
    from safetensors.torch import save_file

    d = Path(model_dir)
    d.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{int(step)}"
    tmp = d / f".{name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(_cpu_tensors(model_state), str(tmp / MODEL_FILE), metadata={"format": "pt", "step": str(step)})
    _fsync_file(tmp / MODEL_FILE)
    if ema_state is not None:
        save_file(_cpu_tensors(ema_state), str(tmp / EMA_FILE), metadata={"format": "pt", "step": str(step)})
        _fsync_file(tmp / EMA_FILE)
    if train_state is not None:
        torch.save(dict(train_state), tmp / TRAIN_STATE_FILE)
        _fsync_file(tmp / TRAIN_STATE_FILE)
    meta: dict[str, Any] = {"step": int(step), "odkit_version": __version__}
    meta.update(extra_meta or {})
    meta["complete"] = True
    (tmp / META_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    _fsync_file(tmp / META_FILE)
    final = d / name
    if final.exists():  # same step written again (e.g. a re-run): replace it
        old = d / f".{name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(d)
    ckpts = list_checkpoints(d)
    stale = ckpts[:-keep] if keep > 0 and len(ckpts) > keep else []
    write_index(d, ckpts[len(stale) :])
    for c in stale:  # after the index no longer names them
        shutil.rmtree(c.path, ignore_errors=True)
    return Checkpoint(step=int(step), path=final)


def remove_stale_temporaries(model_dir: str | os.PathLike[str]) -> None:
    """Delete ``.ckpt-*.tmp`` folders left by an interrupted save."""
    d = Path(model_dir)
    if not d.is_dir():
        return
    for child in d.iterdir():
        if child.name.startswith(".ckpt-") and child.is_dir():
            shutil.rmtree(child, ignore_errors=True)
