"""Hostile traffic over real HTTP: one bad message or client must not hurt anyone else."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time

import httpx
import pytest

from tests.serve.conftest import start_server

POISON = [
    b'{"text": "\\ud800 hi"}',  # a lone UTF-16 surrogate: valid JSON, not encodable for a tokenizer
    b'{"text": "card\\u0000 arrival \\u200b\\u202e\\udfff"}',  # NUL, zero-width, bidi override, lone low surrogate
    b'{"text": "\\ud83d"}',  # nothing left once cleaned
]


@pytest.fixture(scope="module")
def server(tmp_path_factory, make_config):
    db_path = tmp_path_factory.mktemp("hostile") / "serve.sqlite3"
    config = make_config(db_path, **{"limits.requests_per_minute": 0, "limits.max_sessions_per_minute": 0,
                                     "limits.max_body_bytes": 4096, "limits.body_timeout_s": 1})
    with start_server(config) as srv:
        srv.db_path = db_path
        yield srv


async def _burst(url: str, ordinary: int, poison: list[bytes]) -> tuple[list[int], list[httpx.Response]]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as c:
        calls = [c.post("/v1/chat", json={"text": f"when will my card number {i} arrive?"}) for i in range(ordinary)]
        calls += [c.post("/v1/chat", content=p, headers={"Content-Type": "application/json"}) for p in poison]
        out = await asyncio.gather(*calls)
    return [r.status_code for r in out[:ordinary]], out[ordinary:]


def test_poison_messages_mixed_into_a_burst_fail_nobody_else(server):
    for _ in range(3):
        ordinary, poisoned = asyncio.run(_burst(server.url, 40, POISON))
        assert ordinary == [200] * 40
        assert [r.status_code for r in poisoned] == [200, 200, 422], [r.text for r in poisoned]
    assert "must not be empty" in poisoned[2].json()["error"]
    with sqlite3.connect(server.db_path) as conn:
        stored = {r[0] for r in conn.execute("SELECT text FROM messages WHERE role = 'user'")}
    assert "hi" in stored and "card arrival" in stored  # cleaned the same way for models and storage


def test_a_body_over_the_limit_is_refused_before_it_is_read(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        # announces 20 MB and sends none of it: the answer must come without waiting for the body
        sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 20000000\r\n\r\n{\"text\": \"")
        started = time.monotonic()
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert b"at most 4096" in head and time.monotonic() - started < 2

    def chunks():  # no Content-Length (chunked): counted while read, stopped at the limit
        yield b'{"text": "'
        for _ in range(100):
            yield b"x" * 1000

    r = httpx.post(f"{server.url}/v1/chat", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and "more than 4096 bytes" in r.json()["error"]
    assert httpx.post(f"{server.url}/v1/chat", json={"text": "still fine?"}).status_code == 200


def test_a_body_that_trickles_in_times_out(server):
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n{\"te")
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 408"), head


def test_new_conversations_per_address_are_limited_by_default(tmp_path, make_config):
    from convssl.serve.config import LimitsConfig

    assert LimitsConfig().max_sessions_per_minute > 0
    config = make_config(tmp_path / "s.sqlite3", **{"limits.max_sessions_per_minute": 3})
    with start_server(config) as srv, httpx.Client(base_url=srv.url, timeout=30) as c:
        first = c.post("/v1/chat", json={"text": "hello"}).json()["session_id"]
        codes = [c.post("/v1/chat", json={"text": "hello"}).status_code for _ in range(3)]
        assert codes == [200, 200, 429]
        assert c.post("/v1/chat", json={"text": "hello again", "session_id": first}).status_code == 200
    with sqlite3.connect(tmp_path / "s.sqlite3") as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 3


def test_when_the_models_cannot_keep_up_the_answer_is_503_with_retry_after(tmp_path, make_config):
    config = make_config(tmp_path / "q.sqlite3", **{"limits.max_queue": 1, "limits.max_sessions_per_minute": 0,
                                                     "batching.max_batch": 1})

    async def burst(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            return await asyncio.gather(*(c.post("/v1/chat", json={"text": f"is my top-up {i} failing?"})
                                          for i in range(40)))

    with start_server(config) as srv:
        out = asyncio.run(burst(srv.url))
        busy = [r for r in out if r.status_code == 503]
        assert {r.status_code for r in out} <= {200, 503} and busy and len(busy) < 40
        assert all(r.headers["retry-after"] == "1" and "busy" in r.json()["error"] for r in busy)
        assert httpx.get(f"{srv.url}/healthz").json()["batches"]["rejected_overloaded"] == len(busy)

    slow = make_config(tmp_path / "t.sqlite3", **{"limits.model_timeout_s": 0.000001})
    with start_server(slow) as srv:
        r = httpx.post(f"{srv.url}/v1/chat", json={"text": "when does my card come?"}, timeout=30)
        assert r.status_code == 503 and r.headers["retry-after"] == "1" and "did not answer within" in r.json()["error"]
