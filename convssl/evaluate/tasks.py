"""Evaluation tasks: parse `kind:PATH` specs and load their data through the normal readers.

Every task reads its files with `convssl.data.readers.read_inputs`, the same code path as
`convssl prepare`, so an evaluation set is whatever the readers accept (BANKING77 folder,
CLINC150 JSON, SGD files, prepared `dialogues/test.jsonl`) and malformed records are counted, not
silently dropped.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from convssl.data.dialogue import Dialogue, IntentExample

TASK_KINDS = ("intent", "oos", "response", "ppl")


class TaskError(ValueError):
    """A task spec or its data cannot be used; the message names the task and the problem."""


@dataclass
class TaskSpec:
    kind: str
    path: str
    label: str | None = None  # set when two tasks would otherwise share a display name

    @property
    def name(self) -> str:
        """Short display name: `intent:banking77`, from the folder or file stem."""
        if self.label:
            return self.label
        p = Path(self.path)
        stem = p.name if p.is_dir() else (p.parent.name if p.stem in _GENERIC_STEMS else p.stem)
        return f"{self.kind}:{stem}"


_GENERIC_STEMS = {"train", "test", "validation", "val", "data", "data_full", "dataset", "intents"}


def parse_task(spec: str) -> TaskSpec:
    kind, sep, path = spec.partition(":")
    if not sep or kind not in TASK_KINDS or not path:
        raise TaskError(f"task {spec!r} must look like KIND:PATH with KIND one of {list(TASK_KINDS)}")
    if not Path(path).exists():
        raise TaskError(f"task {spec!r}: {path} does not exist")
    return TaskSpec(kind, path)


@dataclass
class IntentData:
    """A labelled intent set split three ways; `val` may be empty (then OOS carves one from train)."""

    name: str
    train: list[IntentExample]
    val: list[IntentExample]
    test: list[IntentExample]
    rejected: int = 0
    labels: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.labels:
            self.labels = sorted({e.label for e in self.train})


def _read(paths: list[str], what: str):
    from convssl.data.readers import RejectLog, read_inputs

    rejects = RejectLog()
    result = read_inputs(paths, rejects=rejects)
    return result, rejects.total


def load_intent_data(spec: TaskSpec) -> IntentData:
    result, rejected = _read([spec.path], "intent")
    if not result.intents:
        raise TaskError(
            f"task {spec.kind}:{spec.path}: no labelled intent examples found "
            "(expected CSV text,label / text,category or CLINC150-style JSON)"
        )
    by_split: dict[str, list[IntentExample]] = defaultdict(list)
    for ex in result.intents:
        by_split[ex.split].append(ex)
    train, val, test = by_split.get("train", []), by_split.get("validation", []), by_split.get("test", [])
    if not train or not test:
        found = sorted(by_split)
        raise TaskError(
            f"task {spec.kind}:{spec.path}: need a train and a test split, found {found} "
            "(name files train.csv/test.csv or JSON keys train/test)"
        )
    return IntentData(spec.name, train, val, test, rejected)


def stratified_subsample(examples: list[IntentExample], n: int | None, seed: int) -> list[IntentExample]:
    """Seeded subsample with per-label quotas proportional to label frequency, at least one each.

    Proportional quotas keep the share of a big label such as CLINC150's `oos` (1,000 of 5,500 test
    texts), and the floor of one keeps rare labels that a plain random sample of a 77- or 150-way
    set would drop. Quotas use the largest-remainder method so they sum to exactly n.
    """
    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    pools: dict[str, list[IntentExample]] = defaultdict(list)
    for ex in examples:
        pools[ex.label].append(ex)
    labels = sorted(pools)
    for label in labels:
        rng.shuffle(pools[label])
    total = len(examples)
    exact = {label: n * len(pools[label]) / total for label in labels}
    quota = {label: min(len(pools[label]), max(1, int(exact[label]))) for label in labels}
    by_remainder = sorted(labels, key=lambda lb: (exact[lb] - int(exact[lb]), rng.random()), reverse=True)
    while sum(quota.values()) > n:  # more labels than n: drop the smallest shares first
        label = min((lb for lb in labels if quota[lb] > 0), key=lambda lb: (exact[lb], lb))
        quota[label] -= 1
    i = 0
    while sum(quota.values()) < n:
        label = by_remainder[i % len(labels)]
        if quota[label] < len(pools[label]):
            quota[label] += 1
        i += 1
    picked = [ex for label in labels for ex in pools[label][: quota[label]]]
    rng.shuffle(picked)
    return picked


def k_per_class(labels: list[int], k: int, seed: int) -> list[int]:
    """Indices of k examples per class (all of a class with fewer), drawn with a seeded RNG."""
    rng = random.Random(seed)
    by_class: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(labels):
        by_class[y].append(i)
    picked: list[int] = []
    for y in sorted(by_class):
        idx = by_class[y]
        picked.extend(rng.sample(idx, min(k, len(idx))))
    return sorted(picked)


def load_dialogues(spec: TaskSpec) -> tuple[list[Dialogue], int]:
    """Dialogues of a held-out split; a prepared folder means its `dialogues/test.jsonl`."""
    path = Path(spec.path)
    prepared = path / "dialogues" / "test.jsonl"
    paths = [str(prepared)] if path.is_dir() and prepared.exists() else [spec.path]
    result, rejected = _read(paths, "dialogue")
    dialogues = [d for d in result.dialogues if len(d.turns) >= 2]
    if not dialogues:
        raise TaskError(f"task {spec.kind}:{spec.path}: no dialogues with at least two turns found")
    return dialogues, rejected
