"""The one in-memory model of conversational data that every reader produces."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

# Roles: task-oriented logs have a user and an agent; open-domain chat has two peers, A and B.
ROLES = ("user", "agent", "A", "B")


@dataclass
class Turn:
    speaker: str
    text: str
    role: str = "user"
    timestamp: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"speaker": self.speaker, "role": self.role, "text": self.text}
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp
        return out


@dataclass
class Dialogue:
    id: str
    turns: list[Turn]
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "turns": [t.to_dict() for t in self.turns]}
        if self.source:
            out["source"] = self.source
        if self.meta:
            out["meta"] = self.meta
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dialogue:
        turns = [
            Turn(
                speaker=str(t["speaker"]),
                text=str(t["text"]),
                role=str(t.get("role", "user")),
                timestamp=t.get("timestamp"),
            )
            for t in data["turns"]
        ]
        return cls(id=str(data["id"]), turns=turns, source=data.get("source", ""), meta=data.get("meta", {}))


@dataclass
class IntentExample:
    """A labelled utterance for downstream intent tasks (BANKING77, CLINC150, feedback exports)."""

    text: str
    label: str
    split: str = "train"
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
