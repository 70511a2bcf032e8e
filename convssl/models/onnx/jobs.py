"""Scheduling ONNX calls: length groups that waste little padding, jobs run longest first.

Shared by the ONNX encoder and the ONNX intent classifier, and by the server's batcher, which
runs the jobs of several requests on one thread pool.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def length_groups(lengths: Sequence[int], max_batch: int = 64, call_cost: float = 6.0) -> list[list[int]]:
    """Split texts into padded batches of similar length, minimising the tokens actually computed.

    A padded batch costs about `count * longest` tokens of compute plus a fixed per-call cost
    (`call_cost`, in tokens: for the int8 MiniLM ~0.7 ms a call against ~0.053 ms a token).
    Chat turns range from 3 to 60 tokens, so one batch padded to its longest wastes up to half the
    work; this dynamic programme over the length-sorted order finds the cheapest split (O(n * max_batch)).
    Returns lists of indices into `lengths`.
    """
    n = len(lengths)
    if n == 0:
        return []
    order = sorted(range(n), key=lambda i: lengths[i])
    sorted_len = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * n  # best[j]: cheapest cost of the first j sorted items
    cut = [0] * (n + 1)
    for j in range(1, n + 1):
        longest = sorted_len[j - 1]
        for i in range(max(0, j - max_batch), j):
            cost = best[i] + call_cost + (j - i) * longest
            if cost < best[j]:
                best[j], cut[j] = cost, i
    groups = []
    j = n
    while j > 0:
        groups.append(order[cut[j] : j])
        j = cut[j]
    return groups[::-1]


@dataclass
class Job:
    """One ONNX call of a batch: `run()` writes its rows of the output arrays. `cost` (tokens times
    the model's per-token work) lets a scheduler start the longest jobs first."""

    cost: float
    run: Any


def run_jobs(jobs: Sequence[Job], pool: Any | None) -> None:
    """Run jobs on a thread pool, longest first (so the two cores finish at about the same time),
    or in this thread when there is no pool. ONNX Runtime sessions are thread-safe and release the
    GIL, so two jobs of the same model may run at once. (Letting the calling thread take jobs too
    saved ~0.5 ms at one request at a time but cost ~20% closed-loop throughput here, 3 of 3 A/B
    rounds, so the caller just waits.)"""
    if pool is None or len(jobs) < 2:
        for job in jobs:
            job.run()
        return
    futures = [pool.submit(job.run) for job in sorted(jobs, key=lambda j: -j.cost)]
    for future in futures:
        future.result()


def token_work(config: Any) -> float:
    """Relative compute per token of a BERT-like model: layers x hidden^2 (the MatMuls)."""
    return float(getattr(config, "num_hidden_layers", 1)) * float(getattr(config, "hidden_size", 1)) ** 2


class Feeder:
    """Tokenise once without padding, then pad each length group to its own longest row."""

    def __init__(self, tokenizer: Any, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        pad = getattr(tokenizer, "pad_token_id", None)
        self.pad_id = int(pad) if pad is not None else 0

    def ids(self, texts: Sequence[str]) -> list[list[int]]:
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=False,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]

    def feeds(self, rows: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for k, row in enumerate(rows):
            ids[k, : len(row)] = row
            mask[k, : len(row)] = 1
        return {"input_ids": ids, "attention_mask": mask}
