"""Micro-batching: concurrent chat requests share one model forward pass.

Per text, a batched forward pass costs a fraction of a single one (one call's fixed cost, fuller
matrices), so the worker takes everything that queued while the previous batch ran and runs the
models once in a worker thread, keeping the event loop free for I/O. Under load batches form by
themselves; `max_wait_ms` > 0 also waits that long for company when idle, which at low rates only
adds latency (measured at 100 requests/s: p50 ~1 ms worse with 1 ms), hence 0 by default.

A batch that raises is split in halves and each half retried, down to single items, so one text
the models cannot take fails alone and its neighbours still get their answers (a poison item in
a batch of 64 costs about 12 extra, smaller calls). The queue is bounded: when `max_pending`
items already wait, `submit` raises `Overloaded` at once instead of letting latency grow without
bound; a caller that stops waiting (a timeout) is dropped from the queue before its batch runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Overloaded(RuntimeError):
    """The queue is full: the models are not keeping up; the caller should try again shortly."""


class MicroBatcher(Generic[In, Out]):
    def __init__(self, fn: Callable[[Sequence[In]], list[Out]], max_batch: int = 64, max_wait_ms: float = 0.0,
                 max_pending: int = 0):
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_pending = max_pending
        self._pending: list[tuple[In, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.items = 0
        self.failed = 0
        self.rejected = 0
        self.retries = 0

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def submit(self, item: In) -> Out:
        if self._task is None:
            raise RuntimeError("MicroBatcher.start() was not called")
        if self.max_pending and len(self._pending) >= self.max_pending:
            self.rejected += 1
            raise Overloaded(f"{len(self._pending)} messages are waiting for the models")
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._wakeup.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.max_wait > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.max_wait)
            live = [p for p in self._pending if not p[1].done()]  # callers that gave up are dropped
            batch, self._pending = live[: self.max_batch], live[self.max_batch :]
            if not self._pending:
                self._wakeup.clear()
            if batch:
                await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[In, asyncio.Future]]) -> None:
        try:
            outputs = await asyncio.to_thread(self.fn, [item for item, _ in batch])
        except Exception as exc:  # isolate the failing item(s); the worker lives on
            if len(batch) == 1:
                self.failed += 1
                if not batch[0][1].done():
                    batch[0][1].set_exception(exc)
                return
            self.retries += 1
            half = len(batch) // 2
            await self._run_batch(batch[:half])
            await self._run_batch(batch[half:])
            return
        self.batches += 1
        self.items += len(batch)
        for (_, fut), out in zip(batch, outputs):
            if not fut.done():
                fut.set_result(out)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "items": self.items,
                "mean_batch": self.items / self.batches if self.batches else 0.0,
                "pending": self.pending, "failed_items": self.failed, "split_retries": self.retries,
                "rejected_overloaded": self.rejected}
