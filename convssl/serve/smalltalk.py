"""Curated small talk: a few topics (greeting, thanks, goodbye, "are you a bot", ...), each with
example phrasings and replies written for the bot.

A turn is small talk when its embedding is nearer to a topic's example than to every near miss
(questions that open like small talk but ask for something, "hi, my card hasn't arrived") and at
least `smalltalk.threshold` similar. Unlike a response bank mined from open chat, every reply here
fits a service bot, so a match is never a non-sequitur; a turn that matches nothing gets no small
talk at all. Whether the small-talk reply is used is decided in `policy.py`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convssl.config import read_yaml_mapping
from convssl.serve.answers import ResponsesError, package_relative


@dataclass
class SmallTalkTopic:
    name: str
    examples: list[str]
    replies: list[str]


@dataclass
class SmallTalkSet:
    topics: list[SmallTalkTopic]
    negatives: list[str]


def _strings(value: Any, where: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
        raise ResponsesError(f"{where} needs a non-empty string or list of strings")
    return [v.strip() for v in items]


def load_smalltalk(path: str | Path) -> SmallTalkSet:
    """YAML `topics: {name: {examples: [...], replies: [...]}}` plus optional `negatives: [...]`."""
    path = package_relative(Path(path))
    if not path.exists():
        raise FileNotFoundError(f"small-talk file {path} does not exist")
    data = read_yaml_mapping(path, ResponsesError)
    if not isinstance(data.get("topics"), dict) or not data["topics"]:
        raise ResponsesError(f"{path}: expected a mapping with a non-empty 'topics' mapping")
    unknown = sorted(set(data) - {"topics", "negatives"})
    if unknown:
        raise ResponsesError(f"{path}: unknown top-level key(s) {unknown}; expected 'topics' and 'negatives'")
    topics = []
    for name, body in data["topics"].items():
        if not isinstance(body, dict) or set(body) != {"examples", "replies"}:
            raise ResponsesError(f"{path}: topic {name!r} needs exactly 'examples' and 'replies'")
        topics.append(SmallTalkTopic(str(name), _strings(body["examples"], f"{path}: topic {name!r} examples"),
                                     _strings(body["replies"], f"{path}: topic {name!r} replies")))
    negatives = _strings(data["negatives"], f"{path}: negatives") if data.get("negatives") else []
    return SmallTalkSet(topics, negatives)


class SmallTalk:
    """The embedded examples of every topic; `match(embeddings)` gives (topic, score) per turn."""

    def __init__(self, smalltalk: SmallTalkSet, encoder: Any):
        self.topics = smalltalk.topics
        texts = [ex for t in self.topics for ex in t.examples]
        self.owner = np.array([i for i, t in enumerate(self.topics) for _ in t.examples])
        self.examples = encoder.embed(texts, normalize=True)
        self.negatives = encoder.embed(smalltalk.negatives, normalize=True) if smalltalk.negatives else None

    def match(self, embeddings: np.ndarray) -> list[tuple[str, float]]:
        """The nearest topic and its cosine, or ("", 0) where a near miss is nearer."""
        sims = embeddings @ self.examples.T
        best = sims.argmax(axis=1)
        scores = sims[np.arange(len(best)), best]
        if self.negatives is not None:
            scores = np.where(scores > (embeddings @ self.negatives.T).max(axis=1), scores, 0.0)
        return [(self.topics[self.owner[i]].name if s > 0 else "", float(s)) for i, s in zip(best, scores)]

    def reply(self, topic: str, rng: random.Random) -> str:
        for t in self.topics:
            if t.name == topic:
                return rng.choice(t.replies)
        return ""
