"""Request and response bodies of the HTTP API (pydantic): the OpenAPI schema is built from these."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from convssl.serve.text import clean_text

SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
# Ids are SQLite INTEGERs: a larger number must be a 422, not an OverflowError deep in a query
# (found by the schemathesis fuzz test).
MAX_ID = 2**63 - 1
RowId = Annotated[int, Field(ge=0, le=MAX_ID)]


def cleaned_text(v: str) -> str:
    """A message text as every model and the database see it; empty once cleaned is refused."""
    v = clean_text(v)
    if not v:
        raise ValueError("text must not be empty (control and invisible characters do not count)")
    return v


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

    _text = field_validator("text")(cleaned_text)


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
    # [intent, probability] pairs; typed as a 2-item list because FastAPI writes a tuple as an
    # array-form `items`, which OpenAPI 3.1 validators reject
    top: list[Annotated[list[str | float], Field(min_length=2, max_length=2)]] = []
    # what the bot did (policy.KINDS), why it escalated, the intents a clarifying question offers,
    # and whether the turn counted as understood: what `convssl conversations test` checks
    kind: Literal["answer", "smalltalk", "bank", "clarify", "fallback", "escalate", "agent"] = "answer"
    reason: str | None = None
    options: list[str] = []
    understood: bool = False


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    session_id: str
    message_id: RowId
    rating: Literal["up", "down", 1, -1]
    comment: Annotated[str, Field(max_length=1000)] | None = None

    @field_validator("comment")
    @classmethod
    def _comment(cls, v: str | None) -> str | None:
        return clean_text(v) if v is not None else None


def _clean_label(v: str) -> str:
    v = clean_text(v)
    if not v:
        raise ValueError("label must not be empty")
    return v


Label = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean_label)]
# `agent`: with a named account the account's name is recorded and this is ignored; only the
# deprecated shared token takes the agent's name from the request.
AgentName = Annotated[str, Field(max_length=64)]


class AgentReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: Annotated[str, Field(min_length=1, max_length=4000)]
    agent: AgentName | None = None

    _text = field_validator("text")(cleaned_text)


class TakeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent: AgentName | None = None


class LabelIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Label
    new_intent: bool = Field(False, description="confirm a label that is not an intent of the classifier")
    agent: AgentName | None = None


class ResolveIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: Annotated[str, Field(max_length=100)] | None = None
    labels: dict[RowId, Label] | None = None
    new_intent: bool = Field(False, description="confirm labels that are not intents of the classifier")
    agent: AgentName | None = None

    @field_validator("label")
    @classmethod
    def _label(cls, v: str | None) -> str | None:
        return clean_text(v) or None if v is not None else None


class ErrorOut(BaseModel):
    """Every 4xx/5xx answer: one line naming the field, the limit or what to do."""

    error: str


def error_responses(*codes: int) -> dict[int | str, dict[str, object]]:
    """OpenAPI entries for the error codes a route can answer (they replace FastAPI's 422 shape)."""
    meaning = {400: "not JSON / not an object", 401: "missing, wrong or revoked agent token",
               404: "no such conversation or message", 408: "body not received in time",
               413: "request body too large", 422: "a field is invalid (the message names it)",
               429: "rate limit", 503: "busy (Retry-After) or agent API disabled"}
    return {code: {"model": ErrorOut, "description": meaning[code]} for code in codes}
