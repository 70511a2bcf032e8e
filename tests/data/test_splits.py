"""Deterministic, id-based splits: stable across runs and corpus growth, proportional, seeded."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest

from convssl.data.splits import assign_split

IDS = [f"sgd/dialogue_{i:05d}" for i in range(10_000)]


def test_same_split_every_call_and_process() -> None:
    first = [assign_split(i) for i in IDS[:200]]
    assert first == [assign_split(i) for i in IDS[:200]]
    code = "from convssl.data.splits import assign_split; print(','.join(assign_split(f'sgd/dialogue_{i:05d}') for i in range(200)))"
    # A new interpreter has a different hash() salt; the split must not change.
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "123"},
    )
    assert other.stdout.strip().split(",") == first


def test_growing_the_population_keeps_old_assignments() -> None:
    before = {i: assign_split(i) for i in IDS[:5000]}
    after = {i: assign_split(i) for i in IDS}  # twice the data
    assert all(after[i] == s for i, s in before.items())


def test_proportions_follow_ratios() -> None:
    counts = Counter(assign_split(i) for i in IDS)
    assert abs(counts["train"] / 10_000 - 0.9) < 0.01
    assert abs(counts["validation"] / 10_000 - 0.05) < 0.008
    assert abs(counts["test"] / 10_000 - 0.05) < 0.008
    custom = Counter(assign_split(i, {"a": 0.5, "b": 0.3, "c": 0.2}) for i in IDS)
    assert abs(custom["a"] / 10_000 - 0.5) < 0.02 and abs(custom["c"] / 10_000 - 0.2) < 0.02


def test_seeds_give_different_splits() -> None:
    a = [assign_split(i, seed=0) for i in IDS[:2000]]
    b = [assign_split(i, seed=1) for i in IDS[:2000]]
    assert sum(x != y for x, y in zip(a, b)) > 100


def test_a_dialogue_is_never_split() -> None:
    # The split depends on the id alone, so every turn, copy or shard of a dialogue agrees.
    assert len({assign_split("chitchat/42") for _ in range(50)}) == 1


@pytest.mark.parametrize(
    ("ratios", "message"),
    [
        ({"train": 0.9, "test": 0.2}, "sum to 1"),
        ({"train": 1.0, "test": 0.0}, "'test' must be a positive"),
        ({"train": 1.1, "test": -0.1}, "'test' must be a positive"),
        ({}, "empty"),
    ],
)
def test_bad_ratios_are_clear_errors(ratios: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        assign_split("x", ratios)
