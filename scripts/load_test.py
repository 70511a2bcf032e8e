"""Load test of `convssl serve` on loopback: closed loop (N clients) and open loop (fixed rate).

Not a unit test: it starts the server as a subprocess (one uvicorn worker, as deployed), drives it
with a minimal keep-alive HTTP client (so the client costs the shared CPU as little as possible),
and afterwards checks in the database that every acknowledged message was stored. One request in
`--poison-every` (50) is hostile (a lone UTF-16 surrogate, control and invisible characters, a text
that is empty once cleaned): those may get 200 or 422, and no request may get a 5xx.

    python scripts/load_test.py --classifier runs/demo/banking77_intent --seconds 10
    python scripts/load_test.py --classifier DIR --seconds 2 --rate 50 --clients 8   # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# What one user sent that once broke everyone's turn in the same micro-batch (issue 15).
POISON = [
    b'{"text": "\\ud800 hi"}',
    b'{"text": "card\\u0000 arrival \\u200b\\u202e\\udfff"}',
    b'{"text": "\\ud83d\\u200b"}',
    b'{"text": "my top-up \\u202e\\u0007failed\\udc00"}',
]
MAX_REQUESTS = 200_000  # hard bound whatever the arguments
IDLE_S = 3.0  # uvicorn drops keep-alive connections idle for 5 s


class Conn:
    """One keep-alive HTTP/1.1 connection; just enough protocol for POST /v1/chat."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None
        self.last_used = time.perf_counter()

    async def post(self, path: str, body: dict | bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(), len(data), data))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await self.reader.readexactly(length)
        self.last_used = time.perf_counter()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def percentiles(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "p99_ms": float("nan")}
    a = np.asarray(lat) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


class Texts:
    def __init__(self, texts: list[str], seed: int = 0, poison_every: int = 0):
        self.texts = texts
        random.Random(seed).shuffle(self.texts)
        self.i = 0
        self.poison_every = poison_every

    def next(self) -> str:
        self.i += 1
        return self.texts[self.i % len(self.texts)]

    def body(self, session_id: str) -> tuple[bool, dict | bytes]:
        """The next request body: an ordinary turn, or every `poison_every`-th a hostile one."""
        text = self.next()
        if self.poison_every and self.i % self.poison_every == 0:
            return True, POISON[(self.i // self.poison_every) % len(POISON)]
        return False, {"session_id": session_id, "text": text}


class Counts:
    """Status codes of ordinary and poison requests; 0 = the connection failed."""

    def __init__(self) -> None:
        self.ordinary: dict[int, int] = {}
        self.poison: dict[int, int] = {}

    def add(self, poison: bool, status: int) -> None:
        into = self.poison if poison else self.ordinary
        into[status] = into.get(status, 0) + 1

    def summary(self) -> dict:
        ok = self.ordinary.get(200, 0) + self.poison.get(200, 0)
        both = list(self.ordinary.items()) + list(self.poison.items())
        # 503 is the server shedding load it cannot keep up with (Retry-After); any other 5xx is a bug
        return {"ok": ok, "errors": sum(n for s, n in self.ordinary.items() if s != 200),
                "server_errors_5xx": sum(n for s, n in both if s >= 500 and s != 503),
                "shed_503": sum(n for s, n in both if s == 503), "poison_sent": sum(self.poison.values()),
                "poison_statuses": {str(k): v for k, v in sorted(self.poison.items())}}


async def closed_loop(host: str, port: int, clients: int, seconds: float, texts: Texts,
                      limit: int | None = None) -> dict:
    lat: list[float] = []
    counts = Counts()
    sent = 0
    stop = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal sent
        conn = Conn(host, port)
        sid = f"closed-{k:04d}-{os.getpid()}"
        while time.perf_counter() < stop and sent < min(MAX_REQUESTS, limit or MAX_REQUESTS):
            sent += 1
            poison, body = texts.body(sid)
            t0 = time.perf_counter()
            try:
                status, _ = await conn.post("/v1/chat", body)
            except (OSError, asyncio.IncompleteReadError):
                status = 0
                conn = Conn(host, port)
            lat.append(time.perf_counter() - t0)
            counts.add(poison, status)
        conn.close()

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    return {"mode": "closed", "clients": clients, "seconds": round(elapsed, 2), "requests": sent,
            **counts.summary(), "req_per_s": round(sent / elapsed, 1), **percentiles(lat)}


async def open_loop(host: str, port: int, rate: float, seconds: float, texts: Texts) -> dict:
    """Requests start on a fixed schedule; latency counts from the scheduled time (no coordinated omission)."""
    lat: list[float] = []
    counts = Counts()
    idle: list[Conn] = []
    n = min(int(rate * seconds), MAX_REQUESTS)

    async def one(k: int, due: float) -> None:
        conn = None
        while idle and conn is None:
            conn = idle.pop()
            if time.perf_counter() - conn.last_used > IDLE_S:  # the server closes idle keep-alives
                conn.close()
                conn = None
        conn = conn or Conn(host, port)
        poison, body = texts.body(f"open-{k % 256:04d}-{os.getpid()}")
        try:
            status, _ = await conn.post("/v1/chat", body)
            idle.append(conn)
        except (OSError, asyncio.IncompleteReadError):
            status = 0
        lat.append(time.perf_counter() - due)
        counts.add(poison, status)

    start = time.perf_counter() + 0.05
    tasks = []
    for k in range(n):
        due = start + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(k, due)))
    await asyncio.gather(*tasks)
    for c in idle:
        c.close()
    return {"mode": "open", "rate": rate, "requests": n, **counts.summary(), **percentiles(lat)}


def cpu_seconds(pid: int | None = None) -> float:
    """CPU time (user + system) of a process: this one, or the server by pid (Linux /proc)."""
    if pid is None:
        usage = os.times()
        return usage.user + usage.system
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def health(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as response:
        return json.loads(response.read())


def measured(phase, server_pid: int, port: int) -> dict:
    """Run a phase and add what it cost: CPU ms per request of server and client, the mean model
    batch, and the load average before and after (on a shared machine req/s depends on the
    neighbours; CPU per request much less so)."""
    h0 = health(port)["batches"]
    load0, srv0, cli0 = os.getloadavg()[0], cpu_seconds(server_pid), cpu_seconds()
    res = asyncio.run(phase())
    srv, cli = cpu_seconds(server_pid) - srv0, cpu_seconds() - cli0
    h1 = health(port)["batches"]
    n = max(res["requests"], 1)
    batches = h1["batches"] - h0["batches"]
    res.update(server_cpu_ms_per_req=round(1000 * srv / n, 3), client_cpu_ms_per_req=round(1000 * cli / n, 3),
               mean_batch=round((h1["items"] - h0["items"]) / batches, 1) if batches else 0.0,
               load_before=round(load0, 2), load_after=round(os.getloadavg()[0], 2))
    return res


def load_texts(shared: Path) -> list[str]:
    path = shared / "banking77" / "test.csv"
    with path.open(encoding="utf-8") as handle:
        return [row["text"] for row in csv.DictReader(handle)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not start in time")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classifier", default="runs/demo/banking77_intent", help="intent classifier folder")
    ap.add_argument("--config", default="serve_demo", help="serve config (preset or file)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each phase (max 60)")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--rate", type=float, default=100.0, help="open-loop offered rate, requests/s")
    ap.add_argument("--poison-every", type=int, default=50, help="every N-th request is hostile (0 = none)")
    ap.add_argument("--no-cache", action="store_true", help="disable the server's analysis cache")
    ap.add_argument("--distinct", type=int, default=0,
                    help="use only N distinct texts, all sent once in the warm-up, so later phases hit the "
                         "server's analysis cache: measures the serving stack without model cost")
    ap.add_argument("--shared-data", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("overrides", nargs="*", help="extra serve config overrides")
    args = ap.parse_args()
    seconds = min(args.seconds, 60.0)
    pool = load_texts(Path(args.shared_data))
    texts = Texts(pool[: args.distinct] if args.distinct else pool, poison_every=args.poison_every)
    tmp = Path(tempfile.mkdtemp(prefix="convssl-load-"))
    db_path = tmp / "load.sqlite3"
    port = free_port()
    # Escalation off: an escalated conversation bypasses the models, which would flatter the numbers.
    overrides = [f"classifier_path={args.classifier}", f"db_path={db_path}", "limits.requests_per_minute=0",
                 "limits.max_sessions_per_minute=0", "escalation.escalate_out_of_scope=false", "escalation.human_request_threshold=2",
                 *(["batching.cache_size=0"] if args.no_cache else []), *args.overrides]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen([sys.executable, "-m", "convssl", "serve", "--config", args.config,
                             "--host", "127.0.0.1", "--port", str(port), *overrides], cwd=REPO, env=env)
    results = []
    try:
        wait_up(port, proc)
        warm_s = 2.0 if not args.distinct else 60.0
        warm = asyncio.run(closed_loop("127.0.0.1", port, 8, warm_s, texts, limit=args.distinct or None))
        print("warm-up:", warm, flush=True)
        for phase in (lambda: closed_loop("127.0.0.1", port, args.clients, seconds, texts),
                      lambda: open_loop("127.0.0.1", port, args.rate, seconds, texts)):
            res = measured(phase, proc.pid, port)
            print(json.dumps(res), flush=True)
            results.append(res)
        sent = warm["ok"] + sum(r["ok"] for r in results)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with sqlite3.connect(db_path) as conn:
        stored = conn.execute("SELECT COUNT(*) FROM messages WHERE role = 'user'").fetchone()[0]
        replies = conn.execute("SELECT COUNT(*) FROM messages WHERE role = 'bot'").fetchone()[0]
    check = {"acknowledged": sent, "stored_user_messages": stored, "stored_replies": replies,
             "lost": sent - stored}
    print(json.dumps(check))
    if args.out:
        Path(args.out).write_text(json.dumps({"phases": results, "storage": check}, indent=2), encoding="utf-8")
    return 0 if check["lost"] == 0 and all(r["errors"] == 0 and r["server_errors_5xx"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
