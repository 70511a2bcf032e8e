"""In-process push of new messages to open chat pages (Server-Sent Events).

Every event carries the message id as its SSE id, so a page that reconnects (EventSource does so
by itself) sends Last-Event-ID and gets what it missed from the database: nothing is lost if the
connection drops while an agent is typing.
"""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

KEEPALIVE_S = 15.0


class EventHub:
    def __init__(self) -> None:
        self._subscribers: dict[str, set[asyncio.Queue]] = defaultdict(set)

    def publish(self, session_id: str, event: dict[str, Any]) -> None:
        for q in list(self._subscribers.get(session_id, ())):
            q.put_nowait(event)

    def subscribe(self, session_id: str) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue()
        self._subscribers[session_id].add(q)
        return q

    def unsubscribe(self, session_id: str, q: asyncio.Queue) -> None:
        subs = self._subscribers.get(session_id)
        if subs is not None:
            subs.discard(q)
            if not subs:
                self._subscribers.pop(session_id, None)

    def subscriber_count(self, session_id: str) -> int:
        return len(self._subscribers.get(session_id, ()))


def sse(event: dict[str, Any], kind: str = "message") -> str:
    data = json.dumps(event, ensure_ascii=False)
    ident = f"id: {event['id']}\n" if "id" in event else ""
    return f"{ident}event: {kind}\ndata: {data}\n\n"


async def session_stream(
    hub: EventHub,
    session_id: str,
    after_id: int,
    backlog: Callable[[int], Awaitable[list[dict[str, Any]]]],
    is_disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """Backlog since `after_id`, then live events; subscribing first means nothing slips between."""
    q = hub.subscribe(session_id)
    try:
        yield "retry: 1000\n\n"
        last = after_id
        for msg in await backlog(after_id):
            last = max(last, msg["id"])
            yield sse(msg)
        while True:
            try:
                event = await asyncio.wait_for(q.get(), timeout=KEEPALIVE_S)
            except TimeoutError:
                if await is_disconnected():
                    return
                yield ": keep-alive\n\n"
                continue
            if "id" in event and event["id"] <= last:
                continue
            last = max(last, event.get("id", last))
            yield sse(event, event.pop("_kind", "message") if "_kind" in event else "message")
    finally:
        hub.unsubscribe(session_id, q)
