"""Turning dialogue streams into packed sequences and fixed-size groups.

Packing matters for speed: chitchat turns are ~10 tokens, so one turn per row would spend most
compute on padding. Packing consecutive turns (and, when allowed, the next dialogue) into each row
keeps nearly every position a real token.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from typing import TypeVar

import numpy as np

from convssl.pretext.base import DialogueLike, SpecialIds, turn_segment

T = TypeVar("T")


def dialogue_segments(dialogue: DialogueLike, ids: SpecialIds, max_tokens: int) -> list[np.ndarray]:
    """`[ROLE] text [EOT]` per turn, each cut to `max_tokens`."""
    if len(dialogue.turns) != len(dialogue.roles):
        raise ValueError(
            f"dialogue {dialogue.id}: {len(dialogue.turns)} turns but {len(dialogue.roles)} roles"
        )
    return [turn_segment(ids, role, turn, max_tokens) for turn, role in zip(dialogue.turns, dialogue.roles)]


def pack_turns(
    dialogues: Iterable[DialogueLike], ids: SpecialIds, max_length: int, across_dialogues: bool = True
) -> Iterator[np.ndarray]:
    """Rows `[CLS] [ROLE] t1 [EOT] [ROLE] t2 [EOT] ... [SEP]` of at most `max_length` tokens.

    A turn that does not fit is split: its start fills the row and its rest opens the next row,
    again after its role token. So every row but the last is exactly full (no padding, no
    attention mask needed) and no token of a long turn is lost. With
    `across_dialogues`, a row that still has room continues with the next dialogue after a [SEP],
    as RoBERTa packs documents; otherwise each dialogue starts a new row.
    """
    budget = max_length - 2
    row: list[np.ndarray] = []
    used = 0

    def emit() -> np.ndarray:
        return np.concatenate([[ids.bos], *row, [ids.eos]]).astype(np.int64)

    for dialogue in dialogues:
        segments = dialogue_segments(dialogue, ids, None)
        if row and across_dialogues and segments:
            if used < budget:
                row.append(np.array([ids.eos], dtype=np.int64))
                used += 1
            else:
                yield emit()
                row, used = [], 0
        for seg in segments:
            while used + len(seg) > budget:
                room = budget - used
                if room > 0:
                    row.append(seg[:room])
                    seg = np.concatenate([seg[:1], seg[room:]])
                yield emit()
                row, used = [], 0
            row.append(seg)
            used += len(seg)
        if row and not across_dialogues:
            yield emit()
            row, used = [], 0
    if row:
        yield emit()


def stream_blocks(dialogues: Iterable[DialogueLike], ids: SpecialIds, block: int) -> Iterator[np.ndarray]:
    """The dialogues as one token stream (each ended by <|endoftext|>/[SEP]) cut into full blocks.

    The causal LM way (GPT-2, DialoGPT): no padding at all; the final partial block is dropped.
    """
    buffer: list[np.ndarray] = []
    size = 0
    for dialogue in dialogues:
        parts = [*dialogue_segments(dialogue, ids, block), np.array([ids.eos], dtype=np.int64)]
        buffer.extend(parts)
        size += sum(len(p) for p in parts)
        if size >= block:
            flat = np.concatenate(buffer)
            n_full = len(flat) // block
            yield from flat[: n_full * block].reshape(n_full, block)
            rest = flat[n_full * block :]
            buffer, size = [rest], len(rest)


def grouped(items: Iterable[T], size: int, drop_last: bool = False) -> Iterator[list[T]]:
    group: list[T] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []
    if group and not drop_last:
        yield group


def shuffled(items: Iterable[T], buffer_size: int, rng: np.random.Generator) -> Iterator[T]:
    """Deterministic buffer shuffle: spreads examples of one dialogue over many batches, so that
    in-batch negatives rarely come from the same conversation."""
    if buffer_size <= 1:
        yield from items
        return
    buffer: list[T] = []
    for item in items:
        if len(buffer) < buffer_size:
            buffer.append(item)
            continue
        j = int(rng.integers(buffer_size))
        yield buffer[j]
        buffer[j] = item
    order = rng.permutation(len(buffer))
    for j in order:
        yield buffer[j]


class BoundedTee:
    """Feed one dialogue stream to several consumers that advance at different rates.

    Each consumer keeps a queue of at most `max_lag` dialogues; when a fast consumer runs ahead,
    the slow one drops its oldest pending dialogues instead of holding the corpus in memory.
    """

    def __init__(self, source: Iterable[T], consumers: int, max_lag: int = 4096) -> None:
        self._source = iter(source)
        self._queues: list[deque[T]] = [deque() for _ in range(consumers)]
        self._max_lag = max_lag
        self.dropped = [0] * consumers

    def _pull(self) -> bool:
        try:
            item = next(self._source)
        except StopIteration:
            return False
        for i, queue in enumerate(self._queues):
            queue.append(item)
            if len(queue) > self._max_lag:
                queue.popleft()
                self.dropped[i] += 1
        return True

    def consumer(self, index: int) -> Iterator[T]:
        queue = self._queues[index]
        while True:
            if not queue and not self._pull():
                return
            yield queue.popleft()


def windows(dialogues: Iterable[DialogueLike], size: int) -> Iterator[list[DialogueLike]]:
    """Groups of consecutive dialogues with at least two turns: the pool that negatives come from."""
    yield from grouped((d for d in dialogues if len(d.turns) >= 2), size)


def context_row(segments: list[np.ndarray], ids: SpecialIds, budget: int, marked: bool = True) -> np.ndarray:
    """`[CLS] seg ... [SEP]` keeping the most recent turns; the oldest kept turn may lose its start
    (but not its role token when the segments are `marked`)."""
    kept: list[np.ndarray] = []
    used = 0
    for seg in reversed(segments):
        room = budget - used
        if room <= (2 if marked else 0):  # a marked turn needs room for its role token and some text
            break
        if len(seg) > room:
            head = seg[:1] if marked else seg[:0]  # keep the role token
            seg = np.concatenate([head, seg[len(seg) - room + len(head) :]])
        kept.append(seg)
        used += len(seg)
    return np.concatenate([[ids.bos], *reversed(kept), [ids.eos]]).astype(np.int64)


def with_role(segment: np.ndarray, role_id: int) -> np.ndarray:
    """A candidate turn spoken by the role the true reply has, so the role token gives nothing away."""
    out = segment.copy()
    out[0] = role_id
    return out


def response_key(segment: np.ndarray) -> int:
    """Same text -> same key (role ignored): lets a loss skip duplicate replies as negatives."""
    return hash(tuple(segment[1:].tolist())) & 0x7FFFFFFFFFFFFFFF
