"""What several routers share: the state dependency, the agent check, error and message shapes."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException
from fastapi.responses import JSONResponse

from convssl.serve.state import ServeState, get_state

State = Annotated[ServeState, Depends(get_state)]


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Every error is one JSON object with a one-line `error` that names the field or the limit."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


def require_agent(s: State, authorization: Annotated[str | None, Header()] = None) -> None:
    token = s.token
    if not token:
        raise HTTPException(503, "agent API disabled: no agent token configured")
    given = (authorization or "").removeprefix("Bearer ").strip()
    if not given or not hmac.compare_digest(given.encode(), token.encode()):
        raise HTTPException(401, "missing or wrong agent token (Authorization: Bearer <token>)")


def public(msg: dict[str, Any]) -> dict[str, Any]:
    """What a chat page may see of a message: no model internals beyond the intent."""
    return {"id": msg["id"], "role": msg["role"], "text": msg["text"], "handled_by": msg.get("handled_by"),
            "intent": msg.get("intent"), "escalated": msg.get("escalated", False),
            "created_at": msg.get("created_at")}
