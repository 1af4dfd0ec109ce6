"""`TensorMap`, `MappingPlan` and `build_plan`: checks a family's (odkit, TF, transform) triples against the
model's state_dict and the checkpoint's variables (names and shapes)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from odkit.errors import OdkitError

Transform = Callable[[np.ndarray], np.ndarray]
MODEL_ROOT = "model/"
SKIPPED_BUFFERS = ("num_batches_tracked",)  # torch BN step counters: TF has none, odkit never reads them


@dataclass(frozen=True)
class TensorMap:
    odkit_name: str
    tf_name: str
    transform: Transform


@dataclass
class MappingPlan:
    maps: list[TensorMap]
    unmatched_tf: list[str]
    unfilled: list[str]
    mismatched: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not (self.unmatched_tf or self.unfilled or self.mismatched)

    def describe_problems(self, limit: int = 5) -> str:
        parts = []
        for what, items in (
            ("unfilled odkit tensors", self.unfilled),
            ("unused TF variables", self.unmatched_tf),
            ("shape mismatches", self.mismatched),
        ):
            if items:
                more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
                parts.append(f"{len(items)} {what}: " + ", ".join(items[:limit]) + more)
        return "; ".join(parts)

    def tensors(self, ckpt, maps: Iterable[TensorMap] | None = None) -> dict[str, torch.Tensor]:
        """odkit state_dict entries read from ``ckpt`` (one TF tensor in memory at a time)."""
        out: dict[str, torch.Tensor] = {}
        for m in self.maps if maps is None else maps:
            out[m.odkit_name] = torch.from_numpy(np.array(m.transform(ckpt.read(m.tf_name)), copy=True))
        return out

    def load_into(
        self, model: nn.Module, ckpt, maps: Iterable[TensorMap] | None = None, strict: bool = True
    ) -> None:
        """Copy the mapped tensors into ``model`` in place. ``strict`` refuses an incomplete plan."""
        if strict and not self.complete:
            raise OdkitError(
                "TF checkpoint does not match the model: " + self.describe_problems(),
                hint="check that pipeline.config is the one the checkpoint was trained with",
            )
        state = model.state_dict()
        with torch.no_grad():
            for m in self.maps if maps is None else maps:
                value = torch.from_numpy(np.asarray(m.transform(ckpt.read(m.tf_name))))
                target = state[m.odkit_name]
                target.copy_(value.to(target.dtype))


def _out_shape(transform: Transform, shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    return tuple(transform(np.zeros(shape, dtype=dtype if dtype != np.dtype(object) else np.float32)).shape)


def build_plan(
    model: nn.Module,
    variables: Mapping,
    triples: Iterable[tuple[str, str, Transform]],
    root: str = MODEL_ROOT,
) -> MappingPlan:
    """Check ``triples`` (odkit name, TF name, transform) against ``model.state_dict()`` and ``variables``
    (``TFCheckpoint.variables()``). Only TF variables under ``root`` count as unmatched."""
    state = model.state_dict()
    maps: list[TensorMap] = []
    mismatched: list[str] = []
    used_tf: set[str] = set()
    filled: set[str] = set()
    for odkit_name, tf_name, transform in triples:
        if odkit_name not in state:
            raise ValueError(f"mapping names odkit tensor {odkit_name!r}, which the model does not have")
        if odkit_name in filled:
            raise ValueError(f"mapping fills odkit tensor {odkit_name!r} twice")
        var = variables.get(tf_name)
        if var is None:
            continue  # left unfilled (and reported) rather than failing: e.g. a classification checkpoint
        want = tuple(state[odkit_name].shape)
        got = _out_shape(transform, var.shape, var.dtype)
        if got != want:
            mismatched.append(f"{odkit_name} {list(want)} <- {tf_name} {list(var.shape)}")
            continue
        maps.append(TensorMap(odkit_name, tf_name, transform))
        used_tf.add(tf_name)
        filled.add(odkit_name)
    unfilled = [k for k in state if k not in filled and not k.endswith(SKIPPED_BUFFERS)]
    unmatched = sorted(n for n in variables if n.startswith(root) and n not in used_tf)
    return MappingPlan(maps=maps, unmatched_tf=unmatched, unfilled=unfilled, mismatched=mismatched)
