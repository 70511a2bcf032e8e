"""FastAPI app factory for `convssl serve`: chat API, agent API and console, feedback, pages.

Everything runs in one process and one event loop: model work is micro-batched in a worker
thread, SQLite writes are group-committed in a writer thread, and the loop only does I/O. That
is what makes a 2-core machine serve hundreds of chat turns a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import logging
import re
import secrets
import threading
import time
from collections import OrderedDict, defaultdict, deque
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from convssl.serve import db
from convssl.serve.analysis import Brain
from convssl.serve.batching import MicroBatcher
from convssl.serve.config import ServeConfig
from convssl.serve.events import EventHub, session_stream
from convssl.serve.feedback import export_jsonl_lines
from convssl.serve.policy import AGENT_NOTICE, QUEUED_NOTICE, Policy, SessionState

LOG = logging.getLogger("convssl.serve")
STATIC = Path(__file__).resolve().parent / "static"
MAX_CACHED_SESSIONS = 100_000
SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


# ---------------------------------------------------------------------------------------------- models
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
    # what the bot did (policy.KINDS), why it escalated, the intents a clarifying question offers,
    # and whether the turn counted as understood: what `convssl conversations test` checks
    kind: Literal["answer", "smalltalk", "bank", "clarify", "fallback", "escalate", "agent"] = "answer"
    reason: str | None = None
    options: list[str] = []
    understood: bool = False


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


# ---------------------------------------------------------------------------------------------- helpers
class RateLimiter:
    """Sliding one-minute window per key; 0 disables it."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self.hits: dict[str, deque] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        if self.per_minute <= 0:
            return True
        now = time.monotonic()
        window = self.hits[key]
        while window and now - window[0] > 60.0:
            window.popleft()
        if len(window) >= self.per_minute:
            return False
        window.append(now)
        if len(self.hits) > 100_000:  # forget idle keys so memory stays bounded
            for k in [k for k, w in self.hits.items() if not w or now - w[-1] > 60.0]:
                del self.hits[k]
        return True


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _describe_validation(exc: RequestValidationError) -> tuple[int, str]:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return 400, "request body is not valid JSON"
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return 400, "request body must be a JSON object (Content-Type: application/json)"
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return 422, "; ".join(parts)


def _static(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)


# ---------------------------------------------------------------------------------------------- app
class ServeState:
    def __init__(self, config: ServeConfig, brain: Brain):
        self.config = config
        self.brain = brain
        self.store = db.Store(config.db_path)
        self.hub = EventHub()
        self.batcher = MicroBatcher(brain.analyze, config.batching.max_batch, config.batching.max_wait_ms)
        self.policy = Policy.for_brain(brain, config)
        self.limiter = RateLimiter(config.limits.requests_per_minute)
        self.new_sessions = RateLimiter(config.limits.max_sessions_per_minute)
        self.sessions: OrderedDict[str, SessionState] = OrderedDict()
        self.token = config.resolved_agent_token()

    async def session_state(self, session_id: str) -> SessionState | None:
        """Hot sessions live in memory (bounded LRU); the database is the truth after a restart."""
        state = self.sessions.get(session_id)
        if state is None:
            row = await self.store.read(lambda c: db.get_session(c, session_id))
            if row is None:
                return None
            state = self.remember(session_id, SessionState(row["status"], row["low_conf_streak"]))
        else:
            self.sessions.move_to_end(session_id)
        return state

    def remember(self, session_id: str, state: SessionState) -> SessionState:
        self.sessions[session_id] = state
        while len(self.sessions) > MAX_CACHED_SESSIONS:
            self.sessions.popitem(last=False)
        return state


def create_app(config: ServeConfig, brain: Brain | None = None) -> FastAPI:
    """Build the app; pass a loaded `brain` to share models between app instances (tests)."""
    holder: dict[str, ServeState] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServeState(config, brain or await asyncio.to_thread(Brain.load, config))
        if not state.token:
            LOG.warning("no agent token set: the agent API and console are disabled "
                        "(set agent_token or CONVSSL_AGENT_TOKEN)")
        state.batcher.start()
        # The models, tokenizers and libraries are a few million long-lived Python objects; each
        # full garbage collection walked them all (a 100-300 ms stall: the closed-loop p99).
        # Frozen, they are never traversed again; only objects made while serving are.
        gc.collect()
        gc.freeze()
        holder["state"] = state
        app.state.serve = state
        try:
            yield
        finally:
            await state.batcher.stop()
            state.store.close()

    app = FastAPI(title="convssl serve", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Authorization"])

    def S() -> ServeState:
        return holder["state"]

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, message = _describe_validation(exc)
        return _error(status, message)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    def require_agent(authorization: Annotated[str | None, Header()] = None) -> None:
        token = S().token
        if not token:
            raise HTTPException(503, "agent API disabled: no agent token configured")
        given = (authorization or "").removeprefix("Bearer ").strip()
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            raise HTTPException(401, "missing or wrong agent token (Authorization: Bearer <token>)")

    agent_dep = [Depends(require_agent)]

    # ------------------------------------------------------------------ pages
    @app.get("/", include_in_schema=False)
    async def chat_page() -> Response:
        return _static("chat.html", "text/html; charset=utf-8")

    @app.get("/agent", include_in_schema=False)
    async def console_page() -> Response:
        return _static("agent.html", "text/html; charset=utf-8")

    @app.get("/static/{name}", include_in_schema=False)
    async def static_file(name: str) -> Response:
        types = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
        suffix = Path(name).suffix
        if suffix not in types or "/" in name or not (STATIC / name).is_file():
            raise HTTPException(404, "not found")
        return _static(name, types[suffix])

    @app.get("/healthz")
    async def health() -> dict[str, Any]:
        s = S()
        return {"ok": True, "batches": s.batcher.stats(), "db_commits": s.store.commits,
                "cache_hits": s.brain.cache_hits, "models": getattr(s.brain, "backends", {})}

    # ------------------------------------------------------------------ chat
    @app.post("/v1/chat", response_model=ChatOut)
    async def chat(body: ChatIn, request: Request) -> Any:
        s = S()
        if len(body.text) > s.config.limits.max_message_chars:
            return _error(422, f"text: longer than {s.config.limits.max_message_chars} characters")
        session_id = body.session_id
        state = await s.session_state(session_id) if session_id else None
        if state is None:
            client = request.client.host if request.client else "?"
            if not s.new_sessions.allow(client):
                return _error(429, "too many new conversations from this address; try again in a minute")
            session_id = session_id or secrets.token_urlsafe(16)
            state = s.remember(session_id, SessionState())
        if not s.limiter.allow(session_id):
            return _error(429, f"too many messages: at most {s.limiter.per_minute} a minute per conversation")
        if state.status in ("queued", "agent"):
            return await _to_agent(s, session_id, state, body.text)
        return await _to_bot(s, session_id, state, body)

    @app.get("/v1/sessions/{session_id}/messages")
    async def session_messages(session_id: str, after: int = 0) -> dict[str, Any]:
        s = S()
        row = await s.store.read(lambda c: db.get_session(c, session_id)) if SESSION_ID.match(session_id) else None
        if row is None:
            raise HTTPException(404, "no such conversation")
        msgs = await s.store.read(lambda c: db.get_messages(c, session_id, after))
        return {"session_id": session_id, "status": row["status"], "messages": [_public(m) for m in msgs]}

    @app.get("/v1/sessions/{session_id}/events")
    async def session_events(session_id: str, request: Request, after: int = 0,
                             last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        s = S()
        if not SESSION_ID.match(session_id) or await s.session_state(session_id) is None:
            raise HTTPException(404, "no such conversation")
        if last_event_id and last_event_id.isdigit():
            after = max(after, int(last_event_id))

        async def backlog(after_id: int) -> list[dict[str, Any]]:
            msgs = await s.store.read(lambda c: db.get_messages(c, session_id, after_id))
            return [_public(m) for m in msgs]

        stream = session_stream(s.hub, session_id, after, backlog, request.is_disconnected)
        return StreamingResponse(stream, media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackIn) -> dict[str, Any]:
        s = S()
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

    # ------------------------------------------------------------------ agent API
    @app.get("/v1/agent/queue", dependencies=agent_dep)
    async def agent_queue(status: str = "queued,agent") -> dict[str, Any]:
        s = S()
        statuses = [x for x in status.split(",") if x in ("bot", "queued", "agent", "resolved")]
        if not statuses:
            raise HTTPException(422, "status: use queued, agent, resolved or bot (comma-separated)")

        def read(c):
            out = []
            for row in db.list_sessions(c, statuses):
                msgs = db.get_messages(c, row["id"])
                last_user = next((m for m in reversed(msgs) if m["role"] == "user" and m["top"]), None)
                out.append({**row, "messages": len(msgs),
                            "last_message": _public(msgs[-1]) if msgs else None,
                            "top": last_user["top"] if last_user else []})
            return out

        return {"sessions": await s.store.read(read)}

    @app.get("/v1/agent/sessions/{session_id}", dependencies=agent_dep)
    async def agent_session(session_id: str) -> dict[str, Any]:
        s = S()

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

    @app.get("/v1/agent/labels", dependencies=agent_dep)
    async def agent_labels() -> dict[str, Any]:
        return {"labels": S().brain.labels}

    @app.post("/v1/agent/sessions/{session_id}/take", dependencies=agent_dep)
    async def agent_take(session_id: str, body: TakeIn) -> dict[str, Any]:
        s = S()
        state = await s.session_state(session_id)
        if state is None:
            raise HTTPException(404, "no such conversation")
        state.status = "agent"
        await s.store.write(lambda c: db.update_session(c, session_id, status="agent", agent=body.agent))
        s.hub.publish(session_id, {"_kind": "status", "status": "agent", "agent": body.agent})
        return {"ok": True, "status": "agent"}

    @app.post("/v1/agent/sessions/{session_id}/reply", dependencies=agent_dep)
    async def agent_reply(session_id: str, body: AgentReplyIn) -> dict[str, Any]:
        s = S()
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
        s.hub.publish(session_id, _public(msg))
        return {"ok": True, "message": _public(msg)}

    @app.post("/v1/agent/messages/{message_id}/label", dependencies=agent_dep)
    async def agent_label(message_id: int, body: LabelIn) -> dict[str, Any]:
        s = S()
        msg = await s.store.read(lambda c: db.get_message(c, message_id))
        if msg is None or msg["role"] != "user":
            raise HTTPException(404, "no such user message")
        await s.store.write(lambda c: _insert_label(c, msg, body.label, body.agent))
        return {"ok": True, "message_id": message_id, "label": body.label}

    @app.post("/v1/agent/sessions/{session_id}/resolve", dependencies=agent_dep)
    async def agent_resolve(session_id: str, body: ResolveIn) -> dict[str, Any]:
        s = S()
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

    @app.get("/v1/agent/export", dependencies=agent_dep)
    async def agent_export(include_thumbs_up: bool = Query(True)) -> PlainTextResponse:
        s = S()
        lines = await s.store.read(lambda c: export_jsonl_lines(c, include_thumbs_up))
        return PlainTextResponse("".join(lines), media_type="application/x-ndjson")

    return app


def _insert_label(c, msg: dict[str, Any], label: str, agent: str | None) -> int:
    source = "agent_label" if label == msg.get("intent") else "correction"
    c.execute("INSERT INTO labels(message_id, session_id, label, source, agent, created_at) VALUES (?,?,?,?,?,?)",
              (msg["id"], msg["session_id"], label.strip(), source, agent, time.time()))
    return int(msg["id"])


def _public(msg: dict[str, Any]) -> dict[str, Any]:
    """What a chat page may see of a message: no model internals beyond the intent."""
    return {"id": msg["id"], "role": msg["role"], "text": msg["text"], "handled_by": msg.get("handled_by"),
            "intent": msg.get("intent"), "escalated": msg.get("escalated", False),
            "created_at": msg.get("created_at")}


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
    analysis = await s.batcher.submit(body.text)
    decision = s.policy.decide(analysis, state, body.slots)
    now = time.time()

    def write(c):
        db.ensure_session(c, session_id)
        uid = db.insert_message(c, session_id, "user", body.text, intent=decision.intent,
                                confidence=decision.confidence, top=decision.top,
                                out_of_scope=decision.out_of_scope, escalated=decision.escalate,
                                handled_by="bot", created_at=now)
        bid = db.insert_message(c, session_id, "bot", decision.reply, intent=decision.intent,
                                escalated=decision.escalate, handled_by="bot", reply_to=uid, created_at=now)
        fields: dict[str, Any] = {"low_conf_streak": 0 if decision.escalate else decision.streak}
        if decision.escalate:
            fields.update(status="queued", escalation_reason=decision.reason, escalated_at=now)
        elif state.status == "resolved":
            fields["status"] = "bot"
        db.update_session(c, session_id, **fields)
        return uid, bid

    uid, bid = await s.store.write(write)
    state.low_conf_streak = 0 if decision.escalate else decision.streak
    state.options = decision.options
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


# ---------------------------------------------------------------------------------------------- running
def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "warning"):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=2)


class BackgroundServer:
    """uvicorn in a thread on a free port: for tests, the load script and screenshots."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        if port == 0:
            import socket

            with contextlib.closing(socket.socket()) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=self.server.run, name="convssl-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)

