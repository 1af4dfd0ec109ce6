"""Micro-batching: images from concurrent requests share one onnxruntime run.

One consumer task per model takes the first waiting image, then collects more for at most ``timeout_s``
(or until ``max_batch``), stacks the ones with the same height and width, and runs them in the inference
thread. While a batch runs, new requests queue up, so under load batches fill without waiting. Only one
batch runs at a time per model: onnxruntime already uses every core for one run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import numpy as np

Outputs = dict[str, np.ndarray]


class MicroBatcher:
    def __init__(
        self,
        run_batch: Callable[[np.ndarray], Outputs],
        *,
        max_batch: int,
        timeout_s: float,
        executor: Executor,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max(1, int(max_batch))
        self.timeout_s = max(0.0, float(timeout_s))
        self.executor = executor
        self.on_batch = on_batch or (lambda _n, _s: None)
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[Outputs]]] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, pixels: np.ndarray) -> Outputs:
        """Graph outputs for one HxWx3 image (each output keeps a batch dim of 1)."""
        assert self._queue is not None, "MicroBatcher.start() was not called"
        fut: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        await self._queue.put((pixels, fut))
        return await fut

    async def _collect(self) -> list[tuple[np.ndarray, asyncio.Future[Outputs]]]:
        assert self._queue is not None
        items = [await self._queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        while len(items) < self.max_batch:
            try:
                items.append(self._queue.get_nowait())
                continue
            except asyncio.QueueEmpty:
                pass
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                items.append(await asyncio.wait_for(self._queue.get(), remaining))
            except asyncio.TimeoutError:
                break
        return items

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = await self._collect()
            groups: dict[tuple[int, ...], list[Any]] = {}
            for px, fut in items:
                if not fut.done():  # the client may have gone away
                    groups.setdefault(px.shape, []).append((px, fut))
            for group in groups.values():
                batch = np.stack([px for px, _ in group]) if len(group) > 1 else group[0][0][None]
                t0 = time.perf_counter()
                try:
                    out = await loop.run_in_executor(self.executor, self.run_batch, batch)
                except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                    for _, fut in group:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.on_batch(len(group), time.perf_counter() - t0)
                for i, (_, fut) in enumerate(group):
                    if not fut.done():
                        fut.set_result({k: v[i:i + 1] for k, v in out.items()})
