"""The one state every route shares (models, store, push hub, limits), kept on `app.state.serve`."""

from __future__ import annotations

import time
from collections import OrderedDict, defaultdict, deque

from fastapi import Request

from convssl.serve import db
from convssl.serve.analysis import Brain
from convssl.serve.batching import MicroBatcher
from convssl.serve.config import ServeConfig
from convssl.serve.events import EventHub
from convssl.serve.policy import Policy, SessionState

MAX_CACHED_SESSIONS = 100_000


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


class ServeState:
    def __init__(self, config: ServeConfig, brain: Brain):
        self.config = config
        self.brain = brain
        self.store = db.Store(config.db_path)
        self.hub = EventHub()
        self.batcher = MicroBatcher(brain.analyze, config.batching.max_batch, config.batching.max_wait_ms,
                                    max_pending=config.limits.max_queue)
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


def get_state(request: Request) -> ServeState:
    """FastAPI dependency: the state the lifespan put on the app."""
    return request.app.state.serve
