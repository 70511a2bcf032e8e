"""Micro-batching: turns that arrive while a batch runs share the next call; answers go to their askers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from convssl.serve.batching import MicroBatcher


def _doubling(sizes: list[int], delay: float = 0.02):
    def fn(items):
        sizes.append(len(items))
        assert threading.current_thread() is not threading.main_thread()  # off the event loop
        time.sleep(delay)  # a model call: the loop keeps accepting turns meanwhile
        return [2 * x for x in items]

    return fn


@pytest.mark.parametrize("max_wait_ms", [0.0, 2.0])
def test_concurrent_turns_share_batches_and_each_gets_its_own_answer(max_wait_ms):
    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher(_doubling(sizes), max_batch=16, max_wait_ms=max_wait_ms)
        batcher.start()
        try:
            out = await asyncio.gather(*(batcher.submit(i) for i in range(40)))
        finally:
            await batcher.stop()
        return out, batcher.stats()

    out, stats = asyncio.run(main())
    assert out == [2 * i for i in range(40)]
    assert sum(sizes) == 40 and max(sizes) <= 16
    assert len(sizes) <= 4  # 40 turns, batches of up to 16: no turn ran alone
    assert stats["items"] == 40 and stats["batches"] == len(sizes)


def test_no_wait_when_idle_a_lone_turn_runs_at_once():
    sizes: list[int] = []

    async def main():
        batcher = MicroBatcher(_doubling(sizes, delay=0.0), max_wait_ms=0.0)
        batcher.start()
        try:
            started = time.perf_counter()
            assert await batcher.submit(21) == 42
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    assert asyncio.run(main()) < 0.5 and sizes == [1]


def test_a_failing_batch_fails_its_turns_and_the_worker_lives_on():
    calls = []

    def fn(items):
        calls.append(list(items))
        if any(x < 0 for x in items):
            raise ValueError("bad input in this batch")
        return [x + 1 for x in items]

    async def main():
        batcher = MicroBatcher(fn, max_wait_ms=0.0)
        batcher.start()
        try:
            with pytest.raises(ValueError, match="bad input"):
                await batcher.submit(-1)
            return await batcher.submit(1)
        finally:
            await batcher.stop()

    assert asyncio.run(main()) == 2
    assert calls == [[-1], [1]]
