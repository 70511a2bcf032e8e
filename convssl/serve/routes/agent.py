"""The agents' side: queue, conversation detail, take, reply, label, resolve, export.

Every call names a person (a named account, `convssl agents create`), and every action that
changes something (take, reply, label, resolve) is written to the audit trail in the same
transaction as the change itself. A label the classifier does not know is refused unless the
agent confirms it as a new intent (a typo must not become a class); every label given is kept,
the latest one counts.
"""

from __future__ import annotations

import difflib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import PlainTextResponse

from convssl.serve import db
from convssl.serve.feedback import export_jsonl_lines
from convssl.serve.routes.common import CurrentAgent, State, current_agent, public
from convssl.serve.schemas import MAX_ID, AgentReplyIn, LabelIn, ResolveIn, TakeIn, error_responses

router = APIRouter(prefix="/v1/agent", dependencies=[Depends(current_agent)],
                   responses=error_responses(400, 401, 404, 408, 413, 422, 503))


@router.get("/me")
async def agent_me(agent: CurrentAgent) -> dict[str, Any]:
    return {"agent": agent.name or None, "account": agent.account}


@router.get("/queue")
async def agent_queue(s: State, status: str = "queued,agent") -> dict[str, Any]:
    statuses = [x for x in status.split(",") if x in ("bot", "queued", "agent", "resolved")]
    if not statuses:
        raise HTTPException(422, "status: use queued, agent, resolved or bot (comma-separated)")

    def read(c):
        out = []
        for row in db.list_sessions(c, statuses):
            msgs = db.get_messages(c, row["id"])
            last_user = next((m for m in reversed(msgs) if m["role"] == "user" and m["top"]), None)
            out.append({**row, "messages": len(msgs),
                        "last_message": public(msgs[-1]) if msgs else None,
                        "top": last_user["top"] if last_user else []})
        return out

    return {"sessions": await s.store.read(read)}


@router.get("/sessions/{session_id}")
async def agent_session(session_id: str, s: State) -> dict[str, Any]:
    def read(c):
        row = db.get_session(c, session_id)
        if row is None:
            return None
        msgs = db.get_messages(c, session_id)
        history = db.label_history(c, session_id)
        ratings = {r["message_id"]: r["rating"] for r in c.execute(
            "SELECT message_id, rating FROM feedback WHERE session_id = ? ORDER BY id", (session_id,))}
        for m in msgs:
            m["label_history"] = history.get(m["id"], [])
            m["label"] = m["label_history"][-1]["label"] if m["label_history"] else None
            m["rating"] = ratings.get(m["id"])
        return {"session": row, "messages": msgs, "actions": db.session_actions(c, session_id)}

    out = await s.store.read(read)
    if out is None:
        raise HTTPException(404, "no such conversation")
    return out


@router.get("/labels")
async def agent_labels(s: State) -> dict[str, Any]:
    """The classifier's intents, and the new intents agents confirmed so far (the console suggests both)."""
    return {"labels": s.brain.labels, "new_intents": await s.store.read(db.confirmed_new_intents)}


async def _conversation(s: State, session_id: str):
    """The conversation's live state; 404 when there is none."""
    state = await s.session_state(session_id)
    if state is None:
        raise HTTPException(404, "no such conversation")
    return state


@router.post("/sessions/{session_id}/take")
async def agent_take(session_id: str, body: TakeIn, s: State, agent: CurrentAgent) -> dict[str, Any]:
    state = await _conversation(s, session_id)
    who = agent.called(body.agent)

    def write(c):
        db.update_session(c, session_id, status="agent", agent=who)
        db.record_action(c, who, "take", session_id)

    await s.store.write(write)
    state.status = "agent"
    s.hub.publish(session_id, {"_kind": "status", "status": "agent", "agent": who})
    return {"ok": True, "status": "agent", "agent": who}


@router.post("/sessions/{session_id}/reply")
async def agent_reply(session_id: str, body: AgentReplyIn, s: State, agent: CurrentAgent) -> dict[str, Any]:
    state = await _conversation(s, session_id)
    who = agent.called(body.agent)

    def write(c):
        mid = db.insert_message(c, session_id, "agent", body.text, handled_by="agent")
        db.update_session(c, session_id, status="agent", agent=who)
        db.record_action(c, who, "reply", session_id, mid)
        return db.get_message(c, mid)

    msg = await s.store.write(write)
    state.status = "agent"
    s.hub.publish(session_id, public(msg))
    return {"ok": True, "message": public(msg)}


@router.post("/messages/{message_id}/label")
async def agent_label(message_id: Annotated[int, Path(ge=0, le=MAX_ID)], body: LabelIn, s: State, agent: CurrentAgent) -> dict[str, Any]:
    msg = await s.store.read(lambda c: db.get_message(c, message_id))
    if msg is None or msg["role"] != "user":
        raise HTTPException(404, "no such user message")
    who = agent.called(body.agent)

    def write(c):
        new = check_label(c, s.brain.labels, body.label, body.new_intent, "label")
        insert_label(c, msg, body.label, who, new)

    await _write_or_422(s, write)
    return {"ok": True, "message_id": message_id, "label": body.label, "agent": who}


@router.post("/sessions/{session_id}/resolve")
async def agent_resolve(session_id: str, body: ResolveIn, s: State, agent: CurrentAgent) -> dict[str, Any]:
    state = await _conversation(s, session_id)
    who = agent.called(body.agent)

    def write(c):
        msgs = {m["id"]: m for m in db.get_messages(c, session_id)}
        todo: list[tuple[dict[str, Any], str, str]] = []
        for mid, label in (body.labels or {}).items():
            if mid not in msgs or msgs[mid]["role"] != "user":
                raise ValueError(f"labels: message {mid} is not a user message of this conversation")
            todo.append((msgs[mid], label, f"labels.{mid}"))
        if body.label:
            target = next((m for m in reversed(msgs.values()) if m["role"] == "user" and m["escalated"]), None)
            target = target or next((m for m in reversed(msgs.values()) if m["role"] == "user"), None)
            if target is not None and target["id"] not in (body.labels or {}):
                todo.append((target, body.label, "label"))
        for msg, label, field in todo:
            new = check_label(c, s.brain.labels, label, body.new_intent, field)
            insert_label(c, msg, label, who, new)
        db.update_session(c, session_id, status="resolved", low_conf_streak=0, resolved_at=time.time())
        db.record_action(c, who, "resolve", session_id)
        return [msg["id"] for msg, _, _ in todo]

    labelled = await _write_or_422(s, write)
    state.status, state.low_conf_streak, state.repeats, state.unclear = "resolved", 0, 0, None
    s.hub.publish(session_id, {"_kind": "status", "status": "resolved"})
    return {"ok": True, "status": "resolved", "labelled": labelled}


@router.get("/export")
async def agent_export(s: State, include_thumbs_up: bool = Query(True)) -> PlainTextResponse:
    lines = await s.store.read(lambda c: export_jsonl_lines(c, include_thumbs_up))
    return PlainTextResponse("".join(lines), media_type="application/x-ndjson")


async def _write_or_422(s: Any, write: Any) -> Any:
    """Run a write; a ValueError it raises (bad label, wrong message) rolls it back and is the 422."""
    try:
        return await s.store.write(write)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc


def check_label(c, known: list[str], label: str, new_intent: bool, field: str) -> bool:
    """Whether `label` is a new intent; refuses one the classifier lacks unless it is confirmed
    (now, or earlier by any agent). Returns True for a label that is new to the classifier."""
    if label in known:
        return False
    if new_intent or label in db.confirmed_new_intents(c):
        return True
    close = difflib.get_close_matches(label, known, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise ValueError(f"{field}: {label!r} is not an intent of the classifier{hint}; "
                     "send new_intent=true to add it as a new intent")


def insert_label(c, msg: dict[str, Any], label: str, agent: str, new_intent: bool) -> None:
    source = "agent_label" if label == msg.get("intent") else "correction"
    c.execute("INSERT INTO labels(message_id, session_id, label, source, agent, new_intent, created_at)"
              " VALUES (?,?,?,?,?,?,?)", (msg["id"], msg["session_id"], label, source, agent, int(new_intent),
                                           time.time()))
    db.record_action(c, agent, "label", msg["session_id"], msg["id"], label + (" (new intent)" if new_intent else ""))
