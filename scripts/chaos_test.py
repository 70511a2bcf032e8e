"""Chaos test of `convssl serve`: load with poison messages, `kill -9` mid-load, restart, repeat.

Users chat (every `--poison-every`-th message is hostile: lone surrogates, control characters,
an empty-after-cleaning text), rate replies, ask for a person; an agent account answers and labels;
chat pages listen on Server-Sent Events and reconnect with Last-Event-ID after each kill. After
the last cycle the database is checked against what the server acknowledged:

* every acknowledged user message, rating and agent label is stored exactly once;
* every acknowledged agent reply reached its listening page exactly once;
* no ordinary request got a 5xx (a poison message may get 422, never 5xx).

    python scripts/chaos_test.py --classifier runs/demo/banking77_intent            # 5 cycles
    python scripts/chaos_test.py --classifier DIR --cycles 2 --seconds 3 --short    # the suite's form

Exit status 0 when nothing was lost, duplicated or answered 5xx; the counts are printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from scripts.load_test import POISON, free_port, wait_up  # noqa: E402

ORDINARY = ["when will my card arrive", "how do I change my PIN", "my top-up failed", "what exchange rate do you use",
            "I lost my card", "can I close my account", "hello, how are you?", "thanks for the help"]


class Tally:
    """What the server acknowledged (answered 2xx), to compare with the database afterwards."""

    def __init__(self) -> None:
        self.user_messages: list[int] = []
        self.ratings: Counter = Counter()  # message id -> acknowledged ratings
        self.labels: Counter = Counter()  # (message id, label) -> acknowledged labels
        self.agent_replies: dict[str, list[int]] = defaultdict(list)
        self.status: Counter = Counter()  # "ordinary 200", "poison 422", "ordinary 503", ...
        self.server_errors: list[str] = []


async def chat_user(c: httpx.AsyncClient, k: int, stop: float, tally: Tally, poison_every: int,
                    agent: dict[str, str], labels: list[str], rng: random.Random) -> None:
    session_id = f"chaos-user-{k:03d}-{os.getpid()}"
    n = 0
    while time.monotonic() < stop:
        n += 1
        poison = poison_every > 0 and (k * 7919 + n) % poison_every == 0
        kind = "poison" if poison else "ordinary"
        try:
            if poison:
                r = await c.post("/v1/chat", content=rng.choice(POISON), headers={"Content-Type": "application/json"})
            else:
                text = f"{rng.choice(ORDINARY)} (ref {k}-{n}-{rng.randrange(10**6)})"
                r = await c.post("/v1/chat", json={"session_id": session_id, "text": text})
        except httpx.HTTPError:  # the server was killed mid-request: not acknowledged, try again
            await asyncio.sleep(0.2)
            continue
        tally.status[f"{kind} {r.status_code}"] += 1
        if r.status_code >= 500:
            tally.server_errors.append(f"{kind}: {r.status_code} {r.text[:200]}")
        if r.status_code != 200:
            continue
        out = r.json()
        tally.user_messages.append(out["user_message_id"])
        if out.get("handled_by") == "bot" and rng.random() < 0.3:
            if await _acknowledged(c.post("/v1/feedback", json={"session_id": out["session_id"],
                                                                 "message_id": out["message_id"], "rating": "up"})):
                tally.ratings.update([out["message_id"]])
        if rng.random() < 0.1 and out.get("handled_by") == "bot":
            label = rng.choice(labels)
            if await _acknowledged(c.post(f"/v1/agent/messages/{out['user_message_id']}/label",
                                          json={"label": label}, headers=agent)):
                tally.labels.update([(out["user_message_id"], label)])


async def _acknowledged(call) -> bool:
    """Whether the server answered 2xx; a connection cut by the kill is not an acknowledgement."""
    try:
        return (await call).status_code == 200
    except httpx.HTTPError:
        return False


async def agent_worker(c: httpx.AsyncClient, sessions: list[str], stop: float, tally: Tally,
                       agent: dict[str, str]) -> None:
    n = 0
    while time.monotonic() < stop:
        n += 1
        sid = sessions[n % len(sessions)]
        try:
            r = await c.post(f"/v1/agent/sessions/{sid}/reply", json={"text": f"agent reply {n}"}, headers=agent)
            if r.status_code == 200:
                tally.agent_replies[sid].append(r.json()["message"]["id"])
        except httpx.HTTPError:
            await asyncio.sleep(0.2)
        await asyncio.sleep(0.05)


async def listen(url: str, session_id: str, received: list[int], done: asyncio.Event) -> None:
    """A chat page: EventSource semantics, reconnecting with Last-Event-ID after every drop."""
    last = 0
    while not done.is_set():
        try:
            async with httpx.AsyncClient(timeout=httpx.Timeout(5, read=None)) as c, c.stream(
                    "GET", f"{url}/v1/sessions/{session_id}/events",
                    headers={"Last-Event-ID": str(last)} if last else {}) as r:
                event_id = None
                async for line in r.aiter_lines():
                    if line.startswith("id: "):
                        event_id = int(line[4:])
                    elif line.startswith("data: ") and event_id is not None:
                        if json.loads(line[6:]).get("role") == "agent":
                            received.append(event_id)
                        last = max(last, event_id)
                        event_id = None
                    if done.is_set():
                        return
        except (httpx.HTTPError, OSError):
            pass
        await asyncio.sleep(0.2)


def start_server(args, port: int, db_path: Path, log) -> subprocess.Popen:
    overrides = [f"classifier_path={args.classifier}", f"db_path={db_path}", "limits.requests_per_minute=0",
                 "limits.max_sessions_per_minute=0", "agent_token=", *args.overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("CONVSSL_AGENT_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "convssl", "serve", "--config", args.config, "--host", "127.0.0.1",
                             "--port", str(port), *overrides], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_up(port, proc, timeout=600)  # generous: on a loaded machine a start took 150 s
        deadline = time.time() + 300
        while time.time() < deadline:  # the port opens before the lifespan finished: wait for /healthz
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit("server did not become healthy")
    except BaseException:  # never leave a server behind
        proc.kill()
        proc.wait()
        raise


async def setup_escalations(url: str, n: int, agent: dict[str, str]) -> list[str]:
    sessions = []
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        for k in range(n):
            sid = f"chaos-sse-{k:03d}-{os.getpid()}"
            await c.post("/v1/chat", json={"session_id": sid, "text": "I want to talk to a real person"})
            r = await c.post(f"/v1/agent/sessions/{sid}/take", json={}, headers=agent)
            r.raise_for_status()
            sessions.append(sid)
    return sessions


async def cycle(url: str, args, tally: Tally, agent: dict[str, str], labels: list[str], sessions: list[str],
                proc: subprocess.Popen, rng: random.Random) -> None:
    """Load for `--seconds`; the server gets SIGKILL at a random moment in the middle of it."""
    stop = time.monotonic() + args.seconds
    kill_at = args.seconds * rng.uniform(0.4, 0.8)
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as c:
        workers = [chat_user(c, k, stop, tally, args.poison_every, agent, labels, rng) for k in range(args.clients)]
        workers.append(agent_worker(c, sessions, stop, tally, agent))

        async def killer():
            await asyncio.sleep(kill_at)
            os.kill(proc.pid, signal.SIGKILL)

        await asyncio.gather(killer(), *workers)
    proc.wait()


def check(db_path: Path, tally: Tally, received: dict[str, list[int]]) -> dict:
    with sqlite3.connect(db_path) as conn:
        stored_users = Counter(r[0] for r in conn.execute("SELECT id FROM messages WHERE role = 'user'"))
        texts = Counter(r[0] for r in conn.execute("SELECT text FROM messages WHERE role = 'user' AND text LIKE '%(ref %'"))
        ratings = Counter(r[0] for r in conn.execute("SELECT message_id FROM feedback"))
        labels = Counter((r[0], r[1]) for r in conn.execute("SELECT message_id, label FROM labels"))
    lost_messages = [m for m in tally.user_messages if m not in stored_users]
    lost_ratings = sum(max(0, n - ratings[m]) for m, n in tally.ratings.items())
    dup_ratings = sum(max(0, ratings[m] - n) for m, n in tally.ratings.items())
    lost_labels = sum(max(0, n - labels[k]) for k, n in tally.labels.items())
    dup_labels = sum(max(0, labels[k] - n) for k, n in tally.labels.items())
    missed_push = sum(len(set(ids) - set(received[sid])) for sid, ids in tally.agent_replies.items())
    dup_push = sum(n - 1 for ids in received.values() for n in Counter(ids).values() if n > 1)
    return {
        "acknowledged_messages": len(tally.user_messages), "lost_messages": len(lost_messages),
        "duplicated_messages": sum(n - 1 for n in texts.values() if n > 1),
        "acknowledged_ratings": sum(tally.ratings.values()), "lost_ratings": lost_ratings,
        "duplicated_ratings": dup_ratings,
        "acknowledged_labels": sum(tally.labels.values()), "lost_labels": lost_labels, "duplicated_labels": dup_labels,
        "acknowledged_agent_replies": sum(len(v) for v in tally.agent_replies.values()),
        "agent_replies_not_pushed": missed_push, "agent_replies_pushed_twice": dup_push,
        "server_errors": len(tally.server_errors), "statuses": dict(sorted(tally.status.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", default="runs/demo/banking77_intent", help="intent classifier folder")
    ap.add_argument("--config", default="serve_demo", help="serve config (preset or file)")
    ap.add_argument("--cycles", type=int, default=5, help="kill -9 / restart cycles")
    ap.add_argument("--seconds", type=float, default=8.0, help="load per cycle (the kill falls at 40-80%% of it)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--listeners", type=int, default=4, help="escalated conversations with a listening page")
    ap.add_argument("--poison-every", type=int, default=50, help="every N-th chat message is hostile (0 = none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the result as JSON here")
    ap.add_argument("overrides", nargs="*", help="extra serve config overrides")
    args = ap.parse_args(argv)
    from convssl.serve import accounts, db

    rng = random.Random(args.seed)
    tmp = Path(tempfile.mkdtemp(prefix="convssl-chaos-"))
    db_path = tmp / "chaos.sqlite3"
    conn = db.connect(db_path)
    db.migrate(conn)
    agent = {"Authorization": f"Bearer {accounts.create_agent(conn, 'Chaos Agent')}"}
    conn.close()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    tally = Tally()
    received: dict[str, list[int]] = defaultdict(list)
    log = (tmp / "server.log").open("w")

    servers: list[subprocess.Popen] = []

    async def run_all() -> None:
        proc = start_server(args, port, db_path, log)
        servers.append(proc)
        labels = httpx.get(f"{url}/v1/agent/labels", headers=agent).json()["labels"]
        sessions = await setup_escalations(url, args.listeners, agent)
        done = asyncio.Event()
        listeners = [asyncio.create_task(listen(url, sid, received[sid], done)) for sid in sessions]
        for k in range(args.cycles):
            started = time.monotonic()
            await cycle(url, args, tally, agent, labels, sessions, proc, rng)
            proc = await asyncio.to_thread(start_server, args, port, db_path, log)
            servers.append(proc)
            print(f"cycle {k + 1}/{args.cycles}: killed and restarted in {time.monotonic() - started:.1f} s, "
                  f"{len(tally.user_messages)} messages acknowledged so far", flush=True)
        await asyncio.sleep(2.0)  # the pages reconnect and catch up from the database
        done.set()
        await asyncio.wait(listeners, timeout=20)
        for task in listeners:
            task.cancel()
        proc.terminate()
        proc.wait(timeout=30)

    try:
        asyncio.run(run_all())
    finally:
        for proc in servers:  # whatever happened, no server outlives the script
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        log.close()
    result = check(db_path, tally, received)
    result.update(cycles=args.cycles, seconds_per_cycle=args.seconds, clients=args.clients,
                  poison_every=args.poison_every, server_log=str(tmp / "server.log"))
    print(json.dumps(result, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")
    bad = [k for k in ("lost_messages", "duplicated_messages", "lost_ratings", "duplicated_ratings", "lost_labels",
                       "duplicated_labels", "agent_replies_not_pushed", "agent_replies_pushed_twice", "server_errors")
           if result[k]]
    for line in tally.server_errors[:5]:
        print("5xx:", line)
    if bad:
        print("FAILED:", ", ".join(f"{k}={result[k]}" for k in bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
