"""Batch streams for the loop: one per objective, resumable by counting what was consumed.

A stream is a pure function of (seed, objective index, rank layout): the shard reader's order and
the objective's masking generator are both seeded, so re-creating a stream and skipping the
number of batches a checkpoint recorded puts it at exactly the same batch, masks included.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convssl.pretext.base import Batch, PretextObjective

TRAIN_SEED_OFFSET = 0
EVAL_SEED_OFFSET = 10_000


def _rows_of(batch: Batch) -> int:
    return batch.size


def _slice_tensor(value: torch.Tensor, rows: int, rank: int, world_size: int) -> torch.Tensor:
    if value.ndim == 0 or value.shape[0] != rows:
        return value  # per-batch values (temperatures, shapes) are shared, not split
    per = rows // world_size
    return value[rank * per : (rank + 1) * per]


def _flat_position_keys(tensors: dict[str, torch.Tensor]) -> set[str]:
    """`X_positions` (flat indices into the [rows, length] ids) and their `X_labels`.

    MLM-style objectives gather only the predicted positions; those index the whole batch, so
    splitting rows means keeping the positions in the rank's rows and shifting them.
    """
    if "input_ids" not in tensors or tensors["input_ids"].ndim != 2:
        return set()
    keys: set[str] = set()
    for key in tensors:
        if key.endswith("_positions"):
            keys.add(key)
            labels = key[: -len("_positions")] + "_labels"
            if labels in tensors and tensors[labels].shape[:1] == tensors[key].shape[:1]:
                keys.add(labels)
    return keys


def _slice_flat_positions(
    tensors: dict[str, torch.Tensor], keys: set[str], rows: int, rank: int, world_size: int
) -> dict[str, torch.Tensor]:
    if not keys:
        return {}
    length = tensors["input_ids"].shape[1]
    per = rows // world_size
    low, high = rank * per * length, (rank + 1) * per * length
    out: dict[str, torch.Tensor] = {}
    for key in keys:
        if not key.endswith("_positions"):
            continue
        positions = tensors[key]
        keep = (positions >= low) & (positions < high)
        out[key] = positions[keep] - low
        labels = key[: -len("_positions")] + "_labels"
        if labels in keys:
            out[labels] = tensors[labels][keep]
    return out


def _real_tokens(tensors: dict[str, torch.Tensor], fallback: int) -> int:
    """Non-pad tokens of a slice: attention masks where present, else the full id tensors."""
    total = 0
    found = False
    for key, value in tensors.items():
        if not key.endswith("input_ids"):
            continue
        found = True
        mask = tensors.get(key[: -len("input_ids")] + "attention_mask")
        total += int(mask.sum()) if mask is not None else int(value.numel())
    return total if found else fallback


def slice_batch(batch: Batch, rank: int, world_size: int) -> Batch:
    """This rank's contiguous share of a global batch: the ranks' shares together are the batch."""
    if world_size == 1:
        return batch
    rows = _rows_of(batch)
    if rows % world_size:
        raise ValueError(f"a batch of {rows} rows cannot be split evenly across {world_size} ranks")
    flat = _flat_position_keys(batch.tensors)
    tensors = {
        k: _slice_tensor(v, rows, rank, world_size) for k, v in batch.tensors.items() if k not in flat
    }
    tensors.update(_slice_flat_positions(batch.tensors, flat, rows, rank, world_size))
    parts = [slice_batch(p, rank, world_size) for p in batch.parts]
    fallback = batch.real_tokens // world_size
    return Batch(tensors, _real_tokens(tensors, fallback) if tensors else fallback, batch.objective, parts)


class BatchStream:
    """Endless batches of one objective on one rank, optionally built ahead in a thread.

    `consumed` counts batches handed to the loop (not the ones prefetched), which is what a
    checkpoint records and what `skip` replays on resume.
    """

    def __init__(
        self,
        objective: PretextObjective,
        shards_dir: Path,
        split: str,
        batch_size: int,
        seed: int,
        index: int,
        rank: int,
        world_size: int,
        mode: str,
        loop: bool = True,
        prefetch: int = 0,
    ) -> None:
        from convssl.data.shards import ShardReader

        self.mode = mode
        self.rank = rank
        self.world_size = world_size
        shard_mode = mode == "shard" and world_size > 1
        reader = ShardReader(
            shards_dir,
            split=split,
            shuffle=loop,
            seed=seed + index,
            rank=rank if shard_mode else 0,
            world_size=world_size if shard_mode else 1,
            loop=loop,
        )
        self.reader = reader
        # split mode: every rank builds the same global batch (same masks) and keeps its slice;
        # shard mode: every rank reads its own dialogues and builds its own per-rank batch.
        per_rank = batch_size // world_size if shard_mode else batch_size
        rng = np.random.default_rng([seed, index, rank if shard_mode else 0])
        self._source = objective.batches(iter(reader), max(1, per_rank), rng)
        self.consumed = 0
        self._queue: queue.Queue | None = None
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._fill, daemon=True)
            self._thread.start()

    def _fill(self) -> None:
        assert self._queue is not None
        try:
            for batch in self._source:
                self._queue.put(batch)
        except BaseException as exc:  # hand the error to the consumer instead of dying silently
            self._queue.put(exc)
            return
        self._queue.put(StopIteration())

    def _next_global(self) -> Batch:
        if self._queue is None:
            return next(self._source)
        item: Any = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def skip(self, count: int) -> None:
        for _ in range(count):
            self._next_global()
        self.consumed += count

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        batch = self._next_global()
        self.consumed += 1
        if self.mode == "split":
            batch = slice_batch(batch, self.rank, self.world_size)
        return batch
