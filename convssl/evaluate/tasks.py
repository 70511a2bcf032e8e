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

    @property
    def name(self) -> str:
        """Short display name: `intent:banking77`, from the folder or file stem."""
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
    """Seeded subsample that keeps every label: labels take turns giving one example each.

    Round-robin over shuffled per-label pools keeps rare labels in a small sample, which a plain
    random sample of a 77- or 150-way set would drop.
    """
    if n is None or n >= len(examples):
        return list(examples)
    rng = random.Random(seed)
    pools: dict[str, list[IntentExample]] = defaultdict(list)
    for ex in examples:
        pools[ex.label].append(ex)
    for pool in pools.values():
        rng.shuffle(pool)
    labels = sorted(pools)
    rng.shuffle(labels)
    picked: list[IntentExample] = []
    depth = 0
    while len(picked) < n:
        for label in labels:
            if depth < len(pools[label]):
                picked.append(pools[label][depth])
                if len(picked) == n:
                    break
        depth += 1
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
