"""Micro-batching: concurrent chat requests share one model forward pass.

Per text, a batched forward pass costs a fraction of a single one (one call's fixed cost, fuller
matrices), so the worker takes everything that queued while the previous batch ran and runs the
models once in a worker thread, keeping the event loop free for I/O. Under load batches form by
themselves; `max_wait_ms` > 0 also waits that long for company when idle, which at low rates only
adds latency (measured at 100 requests/s: p50 ~1 ms worse with 1 ms), hence 0 by default.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class MicroBatcher(Generic[In, Out]):
    def __init__(self, fn: Callable[[Sequence[In]], list[Out]], max_batch: int = 64, max_wait_ms: float = 0.0):
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._pending: list[tuple[In, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._lock = threading.Lock()
        self.batches = 0
        self.items = 0

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
        fut = asyncio.get_running_loop().create_future()
        self._pending.append((item, fut))
        self._wakeup.set()
        return await fut

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.max_wait > 0 and len(self._pending) < self.max_batch:
                await asyncio.sleep(self.max_wait)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            if not self._pending:
                self._wakeup.clear()
            if not batch:
                continue
            try:
                outputs = await asyncio.to_thread(self.fn, [item for item, _ in batch])
            except Exception as exc:  # every waiter learns about the failure, the worker lives on
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.batches += 1
            self.items += len(batch)
            for (_, fut), out in zip(batch, outputs):
                if not fut.done():
                    fut.set_result(out)

    def stats(self) -> dict[str, Any]:
        return {"batches": self.batches, "items": self.items,
                "mean_batch": self.items / self.batches if self.batches else 0.0}
