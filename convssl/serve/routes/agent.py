"""The agents' side: queue, conversation detail, take, reply, label, resolve, export."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse

from convssl.serve import db
from convssl.serve.feedback import export_jsonl_lines
from convssl.serve.routes.common import State, public, require_agent
from convssl.serve.schemas import AgentReplyIn, LabelIn, ResolveIn, TakeIn

router = APIRouter(prefix="/v1/agent", dependencies=[Depends(require_agent)])


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
        labels = {r["message_id"]: r["label"] for r in c.execute(
            "SELECT message_id, label FROM labels WHERE session_id = ? ORDER BY id", (session_id,))}
        ratings = {r["message_id"]: r["rating"] for r in c.execute(
            "SELECT message_id, rating FROM feedback WHERE session_id = ? ORDER BY id", (session_id,))}
        for m in msgs:
            m["label"] = labels.get(m["id"])
            m["rating"] = ratings.get(m["id"])
        return {"session": row, "messages": msgs}

    out = await s.store.read(read)
    if out is None:
        raise HTTPException(404, "no such conversation")
    return out


@router.get("/labels")
async def agent_labels(s: State) -> dict[str, Any]:
    return {"labels": s.brain.labels}


@router.post("/sessions/{session_id}/take")
async def agent_take(session_id: str, body: TakeIn, s: State) -> dict[str, Any]:
    state = await s.session_state(session_id)
    if state is None:
        raise HTTPException(404, "no such conversation")
    state.status = "agent"
    await s.store.write(lambda c: db.update_session(c, session_id, status="agent", agent=body.agent))
    s.hub.publish(session_id, {"_kind": "status", "status": "agent", "agent": body.agent})
    return {"ok": True, "status": "agent"}


@router.post("/sessions/{session_id}/reply")
async def agent_reply(session_id: str, body: AgentReplyIn, s: State) -> dict[str, Any]:
    state = await s.session_state(session_id)
    if state is None:
        raise HTTPException(404, "no such conversation")
    text = body.text.strip()
    if not text:
        raise HTTPException(422, "text: must not be empty")
    state.status = "agent"

    def write(c):
        mid = db.insert_message(c, session_id, "agent", text, handled_by="agent")
        db.update_session(c, session_id, status="agent", agent=body.agent)
        return db.get_message(c, mid)

    msg = await s.store.write(write)
    s.hub.publish(session_id, public(msg))
    return {"ok": True, "message": public(msg)}


@router.post("/messages/{message_id}/label")
async def agent_label(message_id: int, body: LabelIn, s: State) -> dict[str, Any]:
    msg = await s.store.read(lambda c: db.get_message(c, message_id))
    if msg is None or msg["role"] != "user":
        raise HTTPException(404, "no such user message")
    await s.store.write(lambda c: _insert_label(c, msg, body.label, body.agent))
    return {"ok": True, "message_id": message_id, "label": body.label}


@router.post("/sessions/{session_id}/resolve")
async def agent_resolve(session_id: str, body: ResolveIn, s: State) -> dict[str, Any]:
    state = await s.session_state(session_id)
    if state is None:
        raise HTTPException(404, "no such conversation")

    def write(c):
        msgs = {m["id"]: m for m in db.get_messages(c, session_id)}
        labelled = []
        for mid, label in (body.labels or {}).items():
            if mid not in msgs or msgs[mid]["role"] != "user":
                raise ValueError(f"labels: message {mid} is not a user message of this conversation")
            labelled.append(_insert_label(c, msgs[mid], label, body.agent))
        if body.label:
            target = next((m for m in reversed(msgs.values()) if m["role"] == "user" and m["escalated"]), None)
            target = target or next((m for m in reversed(msgs.values()) if m["role"] == "user"), None)
            if target is not None and target["id"] not in (body.labels or {}):
                labelled.append(_insert_label(c, target, body.label, body.agent))
        db.update_session(c, session_id, status="resolved", low_conf_streak=0, resolved_at=time.time())
        return labelled

    try:
        labelled = await s.store.write(write)
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    state.status, state.low_conf_streak = "resolved", 0
    s.hub.publish(session_id, {"_kind": "status", "status": "resolved"})
    return {"ok": True, "status": "resolved", "labelled": labelled}


@router.get("/export")
async def agent_export(s: State, include_thumbs_up: bool = Query(True)) -> PlainTextResponse:
    lines = await s.store.read(lambda c: export_jsonl_lines(c, include_thumbs_up))
    return PlainTextResponse("".join(lines), media_type="application/x-ndjson")


def _insert_label(c, msg: dict[str, Any], label: str, agent: str | None) -> int:
    source = "agent_label" if label == msg.get("intent") else "correction"
    c.execute("INSERT INTO labels(message_id, session_id, label, source, agent, created_at) VALUES (?,?,?,?,?,?)",
              (msg["id"], msg["session_id"], label.strip(), source, agent, time.time()))
    return int(msg["id"])
