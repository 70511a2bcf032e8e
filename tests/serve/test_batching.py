"""Micro-batching: turns that arrive while a batch runs share the next call; answers go to their askers."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convssl.serve.batching import MicroBatcher, Overloaded


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


def _lone_turn_seconds(sizes: list[int]) -> float:
    async def main():
        batcher = MicroBatcher(_doubling(sizes, delay=0.0), max_wait_ms=0.0)
        batcher.start()
        try:
            started = time.perf_counter()
            assert await batcher.submit(21) == 42
            return time.perf_counter() - started
        finally:
            await batcher.stop()

    return asyncio.run(main())


def test_no_wait_when_idle_a_lone_turn_runs_alone():
    sizes: list[int] = []
    _lone_turn_seconds(sizes)
    assert sizes == [1]


@pytest.mark.benchmark
def test_a_lone_turn_is_answered_at_once():
    assert _lone_turn_seconds([]) < 0.5


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


@settings(max_examples=60, deadline=None)
@given(items=st.lists(st.integers(-3, 50), max_size=80), max_batch=st.integers(1, 64))
def test_property_every_good_item_gets_its_answer_whatever_fails_beside_it(items, max_batch):
    """Negative items are poison: the model call raises whenever one is in the batch."""
    seen: list[list[int]] = []

    def fn(batch):
        seen.append(list(batch))
        if any(x < 0 for x in batch):
            raise ValueError(f"cannot read {min(batch)}")
        return [x * 10 for x in batch]

    async def main():
        batcher = MicroBatcher(fn, max_batch=max_batch)
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.submit(x) for x in items), return_exceptions=True)
        finally:
            await batcher.stop()

    out = asyncio.run(main())
    for x, got in zip(items, out):
        if x < 0:
            assert isinstance(got, ValueError)
        else:
            assert got == x * 10
    assert all(len(b) <= max_batch for b in seen)
    poison = sum(x < 0 for x in items)
    # bisection: each poison item costs at most ~2 log2(batch) extra calls, not one call per item
    assert len(seen) <= -(-len(items) // max_batch) + poison * 2 * max(1, max_batch.bit_length())


def test_a_full_queue_is_refused_at_once_and_callers_that_gave_up_are_skipped():
    ran: list[list[int]] = []

    def fn(batch):
        ran.append(list(batch))
        time.sleep(0.05)
        return list(batch)

    async def main():
        batcher = MicroBatcher(fn, max_batch=4, max_pending=3)
        batcher.start()
        try:
            first = asyncio.ensure_future(batcher.submit(0))
            await asyncio.sleep(0.01)  # 0 is running; the next three wait
            waiting = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
            await asyncio.sleep(0)
            with pytest.raises(Overloaded):
                await batcher.submit(4)
            waiting[1].cancel()  # a caller timed out
            results = await asyncio.gather(first, waiting[0], waiting[2])
            return results, batcher.stats()
        finally:
            await batcher.stop()

    results, stats = asyncio.run(main())
    assert results == [0, 1, 3] and ran == [[0], [1, 3]]
    assert stats["rejected_overloaded"] == 1
