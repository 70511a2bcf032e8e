"""What several routers share: the state dependency, the agent check, error and message shapes."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException
from fastapi.responses import JSONResponse

from convssl.serve import accounts
from convssl.serve.state import ServeState, get_state

State = Annotated[ServeState, Depends(get_state)]


def error(status: int, message: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    """Every error is one JSON object with a one-line `error` that names the field or the limit."""
    return JSONResponse({"error": message, **extra}, status_code=status, headers=headers)


@dataclass(frozen=True)
class Agent:
    """Who is calling the agent API: a named account, or the shared token of older deployments."""

    name: str
    account: bool

    def called(self, claimed: str | None) -> str:
        """The name to record: an account's own name; with the shared token, the name it gives."""
        return self.name if self.account else (claimed or "").strip() or "Agent"


async def current_agent(s: State, authorization: Annotated[str | None, Header()] = None) -> Agent:
    given = (authorization or "").removeprefix("Bearer ").strip()
    name = await s.store.read(lambda c: accounts.agent_for_token(c, given)) if given else None
    if name is not None:
        return Agent(name, account=True)
    if s.token and given and hmac.compare_digest(given.encode(), s.token.encode()):
        return Agent("", account=False)
    if not s.token and not await s.store.read(accounts.has_accounts):
        raise HTTPException(503, "agent API disabled: no agent accounts (create one with "
                                 "`convssl agents create NAME --db DB`)")
    raise HTTPException(401, "missing, wrong or revoked agent token (Authorization: Bearer <token>)")


CurrentAgent = Annotated[Agent, Depends(current_agent)]


def public(msg: dict[str, Any]) -> dict[str, Any]:
    """What a chat page may see of a message: no model internals beyond the intent."""
    return {"id": msg["id"], "role": msg["role"], "text": msg["text"], "handled_by": msg.get("handled_by"),
            "intent": msg.get("intent"), "escalated": msg.get("escalated", False),
            "created_at": msg.get("created_at")}
