"""What a checkpoint's train_state.pt holds besides the weights, written and read back: optimizer, gradient scaler,
RNG, data-stream position, EMA update count, loss history (tensors and primitives only: torch.load(weights_only))."""

from __future__ import annotations

from typing import Any

import torch

from odkit.errors import OdkitError
from odkit.training import data_position
from odkit.training.distributed import DistInfo
from odkit.training.ema import ModelEMA
from odkit.training.rng import capture_rng_state, restore_rng_state, seed_everything

_BAD_STATE = (ValueError, KeyError, TypeError, IndexError, RuntimeError, AttributeError)


def capture(step: int, optimizer: torch.optim.Optimizer, scaler: Any, ema: ModelEMA | None, loader: Any, epoch: int,
            per_rank_batch: int, world_size: int, seed: int, loss_history: torch.Tensor | None) -> dict[str, Any]:
    """The train_state of a checkpoint at ``step``."""
    state: dict[str, Any] = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "optimizer_type": type(optimizer).__name__,
        "scaler": scaler.state_dict() if scaler is not None else {},
        "rng": capture_rng_state(),
        "data": {
            "loader": data_position.loader_state(loader) or {},
            "batches_consumed": step,
            "epoch": epoch,
            "per_rank_batch": per_rank_batch,
            "world_size": world_size,
        },
        "ema_updates": ema.num_updates if ema is not None else 0,
        "seed": seed,
    }
    if loss_history is not None:
        state["loss_history"] = loss_history
    return state


def restore_optimizer(optimizer: torch.optim.Optimizer, train_state: dict[str, Any], where: str) -> None:
    saved_opt = train_state.get("optimizer_type")
    if saved_opt and saved_opt != type(optimizer).__name__:
        raise OdkitError(
            f"cannot resume: the checkpoint was trained with {saved_opt}, the config now asks for "
            f"{type(optimizer).__name__}",
            where=where,
            hint="keep the optimizer, or start a new --model_dir with fine_tune_checkpoint pointing here",
        )
    if "optimizer" in train_state:
        try:
            load_optimizer_state(optimizer, train_state["optimizer"])
        except _BAD_STATE as exc:
            raise OdkitError(
                f"cannot resume the optimizer state: {type(exc).__name__}: {str(exc)[:200]}",
                where=where,
                hint="the optimizer or the trainable variables changed; use a new --model_dir",
            ) from None


def restore_scaler(scaler: Any, train_state: dict[str, Any], where: str) -> None:
    if scaler is not None and train_state.get("scaler"):
        try:
            scaler.load_state_dict(train_state["scaler"])
        except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
            raise OdkitError(f"cannot resume the gradient-scaler state: {str(exc)[:200]}", where=where) from None


def loss_history(train_state: dict[str, Any]) -> list[list[float]]:
    hist = train_state.get("loss_history")
    return [[float(x) for x in row] for row in hist.tolist()] if torch.is_tensor(hist) else []


def restore_rng(train_state: dict[str, Any], dist: DistInfo, seed: int, step: int, where: str) -> None:
    """The main process continues the checkpoint's random streams; other ranks reseed from (seed, rank, step)."""
    if "rng" in train_state:
        if dist.is_main:
            try:
                restore_rng_state(train_state["rng"])
            except _BAD_STATE as exc:
                raise OdkitError(f"cannot resume the random-number state: {str(exc)[:200]}", where=where) from None
        else:
            seed_everything(seed + 7919 * dist.rank + step)
    elif dist.rank:
        seed_everything(seed + 7919 * dist.rank)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: Any) -> None:
    """``optimizer.load_state_dict`` plus the checks torch leaves to the first step: every param group keeps
    the keys and value types of the optimizer built from the config (a crafted file fails here, as one line)."""
    fresh = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    if not isinstance(state, dict) or not isinstance(state.get("param_groups"), list):
        raise ValueError("not an optimizer state dict")
    optimizer.load_state_dict(state)
    for want, got in zip(fresh, optimizer.param_groups):
        if set(want) != set(got) - {"params"}:
            raise ValueError(f"param group keys {sorted(set(got) - {'params'})} != {sorted(want)}")
        for k, v in want.items():
            if isinstance(v, (int, float, bool)) != isinstance(got[k], (int, float, bool)) or (
                    isinstance(v, tuple) and not isinstance(got[k], (tuple, list))):
                raise ValueError(f"param group value {k!r} has type {type(got[k]).__name__}")
    for s in optimizer.state.values():
        if not isinstance(s, dict) or not all(torch.is_tensor(x) or isinstance(x, (int, float)) for x in s.values()):
            raise ValueError("per-parameter state holds something other than tensors and numbers")
