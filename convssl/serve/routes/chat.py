"""The user's side: chat turns, history, live push (SSE) and ratings."""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from convssl.serve import db
from convssl.serve.batching import Overloaded
from convssl.serve.events import session_stream
from convssl.serve.policy import AGENT_NOTICE, QUEUED_NOTICE, SessionState
from convssl.serve.routes.common import State, error, public
from convssl.serve.schemas import MAX_ID, SESSION_ID, ChatIn, ChatOut, FeedbackIn, error_responses
from convssl.serve.state import ServeState

LOG = logging.getLogger("convssl.serve")
RETRY_AFTER = {"Retry-After": "1"}
After = Annotated[int, Query(ge=0, le=MAX_ID, description="only messages with a larger id")]
router = APIRouter(responses=error_responses(400, 404, 408, 413, 422, 429, 503))


@router.post("/v1/chat", response_model=ChatOut)
async def chat(body: ChatIn, request: Request, s: State) -> Any:
    if len(body.text) > s.config.limits.max_message_chars:
        return error(422, f"text: longer than {s.config.limits.max_message_chars} characters")
    session_id = body.session_id
    state = await s.session_state(session_id) if session_id else None
    if state is None:
        client = request.client.host if request.client else "?"
        if not s.new_sessions.allow(client):
            return error(429, "too many new conversations from this address; try again in a minute")
        session_id = session_id or secrets.token_urlsafe(16)
        state = s.remember(session_id, SessionState())
    if not s.limiter.allow(session_id):
        return error(429, f"too many messages: at most {s.limiter.per_minute} a minute per conversation")
    if state.status in ("queued", "agent"):
        return await _to_agent(s, session_id, state, body.text)
    return await _to_bot(s, session_id, state, body)


@router.get("/v1/sessions/{session_id}/messages")
async def session_messages(session_id: str, s: State, after: After = 0) -> dict[str, Any]:
    row = await s.store.read(lambda c: db.get_session(c, session_id)) if SESSION_ID.match(session_id) else None
    if row is None:
        raise HTTPException(404, "no such conversation")
    msgs = await s.store.read(lambda c: db.get_messages(c, session_id, after))
    return {"session_id": session_id, "status": row["status"], "messages": [public(m) for m in msgs]}


@router.get("/v1/sessions/{session_id}/events")
async def session_events(session_id: str, request: Request, s: State, after: After = 0,
                         last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
    if not SESSION_ID.match(session_id) or await s.session_state(session_id) is None:
        raise HTTPException(404, "no such conversation")
    if last_event_id and last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) < 19:
        after = max(after, int(last_event_id))

    async def backlog(after_id: int) -> list[dict[str, Any]]:
        msgs = await s.store.read(lambda c: db.get_messages(c, session_id, after_id))
        return [public(m) for m in msgs]

    stream = session_stream(s.hub, session_id, after, backlog, request.is_disconnected)
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.post("/v1/feedback")
async def feedback(body: FeedbackIn, s: State) -> dict[str, Any]:
    msg = await s.store.read(lambda c: db.get_message(c, body.message_id))
    if msg is None or msg["session_id"] != body.session_id:
        raise HTTPException(404, "no such message in this conversation")
    if msg["role"] not in ("bot", "agent"):
        raise HTTPException(422, "only replies (bot or agent messages) can be rated")
    rating = 1 if body.rating in ("up", 1) else -1

    def write(c):
        c.execute("INSERT INTO feedback(message_id, session_id, rating, comment, created_at) VALUES (?,?,?,?,?)",
                  (body.message_id, body.session_id, rating, body.comment, time.time()))

    await s.store.write(write)
    return {"ok": True, "message_id": body.message_id, "rating": rating}


async def _to_agent(s: ServeState, session_id: str, state: SessionState, text: str) -> JSONResponse:
    """While a person has the conversation, the bot stays silent and the message waits for them."""
    def write(c):
        db.ensure_session(c, session_id)
        uid = db.insert_message(c, session_id, "user", text, handled_by="agent")
        row = db.get_session(c, session_id)
        return uid, row["agent"] if row else None

    uid, agent = await s.store.write(write)
    reply = AGENT_NOTICE.format(agent=agent or "our team") if state.status == "agent" else QUEUED_NOTICE
    return JSONResponse({"session_id": session_id, "reply": reply, "intent": None, "confidence": None,
                         "escalated": True, "handled_by": "agent", "message_id": uid, "user_message_id": uid,
                         "notice": True, "top": [], "kind": "agent", "reason": None, "options": [],
                         "understood": False})


async def _to_bot(s: ServeState, session_id: str, state: SessionState, body: ChatIn) -> JSONResponse:
    try:
        analysis = await asyncio.wait_for(s.batcher.submit(body.text), s.config.limits.model_timeout_s)
    except Overloaded as exc:
        return error(503, f"busy: {exc}; try again in a second", headers=RETRY_AFTER)
    except TimeoutError:
        return error(503, f"busy: the models did not answer within {s.config.limits.model_timeout_s:g} s; "
                          "try again in a second", headers=RETRY_AFTER)
    except Exception as exc:  # the batcher isolated this text: it fails alone, its neighbours were answered
        LOG.warning("the models could not read a message (%s: %s)", type(exc).__name__, exc)
        return error(422, "text: the models could not read this message; please rephrase it")
    decision = s.policy.decide(analysis, state, body.slots)
    now = time.time()

    def write(c):
        db.ensure_session(c, session_id)
        uid = db.insert_message(c, session_id, "user", body.text, intent=decision.intent,
                                confidence=decision.confidence, top=decision.top,
                                out_of_scope=decision.out_of_scope, escalated=decision.escalate,
                                handled_by="bot", created_at=now)
        bid = db.insert_message(c, session_id, "bot", decision.reply, intent=decision.intent,
                                escalated=decision.escalate, handled_by="bot", reply_to=uid, created_at=now,
                                reply_source=decision.source)
        fields: dict[str, Any] = {"low_conf_streak": 0 if decision.escalate else decision.streak}
        if decision.escalate:
            fields.update(status="queued", escalation_reason=decision.reason, escalated_at=now)
        elif state.status == "resolved":
            fields["status"] = "bot"
        db.update_session(c, session_id, **fields)
        return uid, bid

    uid, bid = await s.store.write(write)
    state.after(decision)
    if decision.escalate:
        state.status = "queued"
    elif state.status == "resolved":
        state.status = "bot"
    if s.hub.subscriber_count(session_id):
        s.hub.publish(session_id, {"_kind": "status", "status": state.status})
    return JSONResponse({"session_id": session_id, "reply": decision.reply, "intent": decision.intent,
                         "confidence": round(decision.confidence, 4), "escalated": decision.escalate,
                         "handled_by": "bot", "message_id": bid, "user_message_id": uid, "notice": False,
                         "top": [[lab, round(p, 4)] for lab, p in decision.top],
                         "kind": decision.kind, "reason": decision.reason, "options": decision.options,
                         "understood": decision.understood})
