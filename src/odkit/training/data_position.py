"""Resuming the training data stream where a checkpoint left it.

The trainer counts the batches each rank has consumed and, when the loader has one (odkit.inputs'
InputLoader), saves ``loader.state_dict()`` (its position after the last batch handed out). On resume,
`resume_loader(loader, n, saved)` returns a loader whose first batch is batch n+1 of the original stream:

- a loader with ``load_state_dict`` gets the saved state back;
- a loader (or its sampler) exposing ``skip_batches(n)`` does it itself;
- a ``torch.utils.data.DataLoader`` over a map-style dataset is rebuilt with a batch sampler that
  drops the first n index batches (indices only: no image is decoded), calling ``set_epoch`` on the
  sampler for finite (per-epoch) samplers;
- anything else is advanced by iterating it (slow, but correct).

Determinism across a resume requires the sampler's order to come from its own seed, not from the
global RNG at iterator creation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset


class _SkipBatchSampler:
    """Yields the batches of ``batch_sampler`` after the first ``skip`` (then later epochs in full)."""

    def __init__(self, batch_sampler: Any, skip: int) -> None:
        self.batch_sampler = batch_sampler
        self.skip = skip
        self.sampler = getattr(batch_sampler, "sampler", None)
        self.batch_size = getattr(batch_sampler, "batch_size", None)
        self.drop_last = getattr(batch_sampler, "drop_last", False)

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.batch_sampler), skip, None)

    def __len__(self) -> int:
        return len(self.batch_sampler)


def _epoch_len(loader: Any) -> int | None:
    try:
        n = len(loader)
    except TypeError:
        return None
    return n if n > 0 else None


def loader_state(loader: Any) -> dict[str, Any] | None:
    """The loader's own stream position (``state_dict()``), when it has one."""
    fn = getattr(loader, "state_dict", None)
    return dict(fn()) if callable(fn) else None


def resume_loader(
    loader: Iterable[Any], batches_consumed: int, saved_state: dict[str, Any] | None = None
) -> tuple[Iterable[Any], int]:
    """(loader positioned after ``batches_consumed`` batches, epoch to start at)."""
    if saved_state and callable(getattr(loader, "load_state_dict", None)):
        loader.load_state_dict(saved_state)  # type: ignore[attr-defined]
        return loader, 0
    n = int(batches_consumed)
    epoch = 0
    epoch_len = _epoch_len(loader)
    if epoch_len is not None:
        epoch, n = divmod(n, epoch_len)
    set_epoch(loader, epoch)
    for obj in (loader, getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None)):
        if obj is not None and hasattr(obj, "skip_batches"):
            obj.skip_batches(n)
            return loader, epoch
    if n == 0:
        return loader, epoch
    if isinstance(loader, DataLoader) and not isinstance(loader.dataset, IterableDataset):
        kwargs: dict[str, Any] = {
            "num_workers": loader.num_workers,
            "collate_fn": loader.collate_fn,
            "pin_memory": loader.pin_memory,
            "timeout": loader.timeout,
            "worker_init_fn": loader.worker_init_fn,
            "generator": loader.generator,
        }
        if loader.num_workers > 0:
            kwargs["prefetch_factor"] = loader.prefetch_factor
            kwargs["persistent_workers"] = False
            kwargs["multiprocessing_context"] = loader.multiprocessing_context
        return DataLoader(loader.dataset, batch_sampler=_SkipBatchSampler(loader.batch_sampler, n), **kwargs), epoch
    return _SkipIterable(loader, n), epoch


class _SkipIterable:
    def __init__(self, inner: Iterable[Any], skip: int) -> None:
        self.inner = inner
        self.skip = skip
        self.sampler = getattr(inner, "sampler", None)  # for set_epoch
        self.batch_sampler = getattr(inner, "batch_sampler", None)

    def __iter__(self) -> Iterator[Any]:
        skip, self.skip = self.skip, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self) -> int:
        return len(self.inner)  # type: ignore[arg-type]


def set_epoch(loader: Any, epoch: int) -> None:
    """Call ``set_epoch`` on the loader's sampler(s) when they have one (DistributedSampler style)."""
    seen = set()
    for obj in (
        getattr(loader, "sampler", None),
        getattr(getattr(loader, "batch_sampler", None), "sampler", None),
        getattr(loader, "batch_sampler", None),
    ):
        if obj is not None and id(obj) not in seen and hasattr(obj, "set_epoch"):
            seen.add(id(obj))
            obj.set_epoch(epoch)
