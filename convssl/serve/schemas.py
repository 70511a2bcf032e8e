"""Request and response bodies of the HTTP API (pydantic): the OpenAPI schema is built from these."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class ChatIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str | None = None
    text: str
    slots: dict[str, Annotated[str, Field(max_length=100)]] | None = Field(default=None, max_length=10)

    @field_validator("session_id")
    @classmethod
    def _session_id(cls, v: str | None) -> str | None:
        if v is not None and not SESSION_ID.match(v):
            raise ValueError("session_id must be 8-64 characters of letters, digits, '-' or '_'")
        return v

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("text must not be empty")
        return v


class ChatOut(BaseModel):
    session_id: str
    reply: str
    intent: str | None
    confidence: float | None
    escalated: bool
    handled_by: Literal["bot", "agent"]
    message_id: int
    user_message_id: int
    notice: bool = False
    top: list[tuple[str, float]] = []


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str
    message_id: int
    rating: Literal["up", "down", 1, -1]
    comment: Annotated[str, Field(max_length=1000)] | None = None


class AgentReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    agent: Annotated[str, Field(max_length=64)] = "Agent"


class TakeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: Annotated[str, Field(min_length=1, max_length=64)] = "Agent"


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(min_length=1, max_length=100)]
    agent: Annotated[str, Field(max_length=64)] | None = None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(max_length=100)] | None = None
    labels: dict[int, Annotated[str, Field(min_length=1, max_length=100)]] | None = None
    agent: Annotated[str, Field(max_length=64)] | None = None
