"""SQLite store for conversations, messages, ratings and agent labels.

One writer thread owns the write connection and commits whatever queued up while the previous
commit ran (group commit): under load many chat turns share one transaction, yet every request
still waits until its rows are committed, so an acknowledged message is never lost. WAL mode lets
readers (agent console, export) run beside the writer.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'bot',
    low_conf_streak INTEGER NOT NULL DEFAULT 0,
    escalation_reason TEXT,
    escalated_at REAL,
    agent TEXT,
    resolved_at REAL
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    role TEXT NOT NULL,
    text TEXT NOT NULL,
    intent TEXT,
    confidence REAL,
    top_json TEXT,
    out_of_scope INTEGER NOT NULL DEFAULT 0,
    escalated INTEGER NOT NULL DEFAULT 0,
    handled_by TEXT,
    reply_to INTEGER,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_session ON messages(session_id, id);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    session_id TEXT NOT NULL,
    rating INTEGER NOT NULL,
    comment TEXT,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    session_id TEXT NOT NULL,
    label TEXT NOT NULL,
    source TEXT NOT NULL,
    agent TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_message ON labels(message_id);
CREATE TABLE IF NOT EXISTS agents (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS agents_active_name ON agents(name) WHERE revoked_at IS NULL;
CREATE TABLE IF NOT EXISTS agent_actions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    action TEXT NOT NULL,
    session_id TEXT,
    message_id INTEGER,
    detail TEXT,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS agent_actions_session ON agent_actions(session_id, id);
"""
# Columns added after the first release: (table, column, declaration). Databases written by an
# older version get them on open; their old rows keep NULL, which every reader treats as "unknown".
ADDED_COLUMNS = [
    ("messages", "reply_source", "TEXT"),  # bot replies: template | smalltalk | bank | clarify | fallback | escalation
    ("labels", "new_intent", "INTEGER NOT NULL DEFAULT 0"),  # confirmed as a label the classifier lacks
]

_STOP = object()


def connect(path: str | Path, readonly: bool = False) -> sqlite3.Connection:
    path = Path(path)
    if readonly:
        if not path.exists():
            raise FileNotFoundError(f"database {path} does not exist")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout=5000")
    return conn


class Store:
    """Async-friendly facade: `await store.write(fn)` runs fn(conn) in the writer's next transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._conn = connect(self.path)
        migrate(self._conn)
        self._reader = connect(self.path)
        self._read_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer_loop, name="convssl-db-writer", daemon=True)
        self._thread.start()
        self.commits = 0
        self.writes = 0

    # -- plumbing -------------------------------------------------------------------------------
    def _writer_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    self._run_batch(batch)
                    return
                batch.append(item)
            self._run_batch(batch)

    def _run_batch(self, batch: list[tuple[Callable, Future]]) -> None:
        results: list[tuple[Future, Any, BaseException | None]] = []
        self._conn.execute("BEGIN IMMEDIATE")
        for fn, fut in batch:
            self._conn.execute("SAVEPOINT item")
            try:
                results.append((fut, fn(self._conn), None))
                self._conn.execute("RELEASE item")
            except BaseException as exc:  # one bad request must not roll back the others
                self._conn.execute("ROLLBACK TO item")
                self._conn.execute("RELEASE item")
                results.append((fut, None, exc))
        try:
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._conn.execute("ROLLBACK")
            results = [(fut, None, exc) for fut, _, _ in results]
        self.commits += 1
        self.writes += len(batch)
        for fut, value, exc in results:
            if exc is None:
                fut.set_result(value)
            else:
                fut.set_exception(exc)

    def submit(self, fn: Callable[[sqlite3.Connection], Any]) -> Future:
        fut: Future = Future()
        self._queue.put((fn, fut))
        return fut

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.wrap_future(self.submit(fn))

    def read_sync(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        with self._read_lock:
            return fn(self._reader)

    async def read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        return await asyncio.to_thread(self.read_sync, fn)

    def close(self) -> None:
        self._queue.put(_STOP)
        self._thread.join(timeout=10)
        self._conn.close()
        self._reader.close()


def has_column(conn: sqlite3.Connection, table: str, column: str) -> bool:
    return column in {r[1] for r in conn.execute(f"PRAGMA table_info({table})")}


def migrate(conn: sqlite3.Connection) -> None:
    """Create the tables, and add the columns an older database lacks."""
    conn.executescript(SCHEMA)
    for table, column, declaration in ADDED_COLUMNS:
        if not has_column(conn, table, column):
            conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")


# -- statements (run inside the writer or reader) -------------------------------------------------
def ensure_session(conn: sqlite3.Connection, session_id: str) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO sessions(id, created_at, updated_at) VALUES (?, ?, ?) ON CONFLICT(id) DO NOTHING",
        (session_id, now, now),
    )


def insert_message(conn: sqlite3.Connection, session_id: str, role: str, text: str, **fields: Any) -> int:
    top = fields.get("top")
    cur = conn.execute(
        "INSERT INTO messages(session_id, role, text, intent, confidence, top_json, out_of_scope, escalated,"
        " handled_by, reply_to, created_at, reply_source) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            session_id,
            role,
            text,
            fields.get("intent"),
            fields.get("confidence"),
            json.dumps(top) if top is not None else None,
            int(bool(fields.get("out_of_scope"))),
            int(bool(fields.get("escalated"))),
            fields.get("handled_by"),
            fields.get("reply_to"),
            fields.get("created_at", time.time()),
            fields.get("reply_source"),
        ),
    )
    return int(cur.lastrowid)


def update_session(conn: sqlite3.Connection, session_id: str, **fields: Any) -> None:
    fields["updated_at"] = time.time()
    cols = ", ".join(f"{k} = ?" for k in fields)
    conn.execute(f"UPDATE sessions SET {cols} WHERE id = ?", (*fields.values(), session_id))


def get_session(conn: sqlite3.Connection, session_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
    return dict(row) if row else None


def message_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    out["top"] = json.loads(out.pop("top_json")) if out.get("top_json") else []
    out["out_of_scope"] = bool(out["out_of_scope"])
    out["escalated"] = bool(out["escalated"])
    return out


def get_messages(conn: sqlite3.Connection, session_id: str, after_id: int = 0) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM messages WHERE session_id = ? AND id > ? ORDER BY id", (session_id, after_id)
    ).fetchall()
    return [message_dict(r) for r in rows]


def list_sessions(conn: sqlite3.Connection, statuses: list[str]) -> list[dict[str, Any]]:
    marks = ",".join("?" for _ in statuses)
    rows = conn.execute(
        f"SELECT * FROM sessions WHERE status IN ({marks}) ORDER BY escalated_at, created_at", statuses
    ).fetchall()
    return [dict(r) for r in rows]


def get_message(conn: sqlite3.Connection, message_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (message_id,)).fetchone()
    return message_dict(row) if row else None


def labelled_examples(conn: sqlite3.Connection, include_thumbs_up: bool = True) -> list[dict[str, Any]]:
    """The retraining set: agents' labels win over the bot's own thumbs-up'd guesses.

    The latest label per user message counts (an agent may correct their own label; the earlier
    ones stay in the table as history). A thumbs-up endorses the intent predicted for the user
    message it answered only when the reply *was* that intent's answer (a template): a thumbs-up
    on "passing you to a person", a small-talk reply or a fallback says nothing about the intent.
    """
    examples: dict[int, dict[str, Any]] = {}
    if include_thumbs_up and has_column(conn, "messages", "reply_source"):  # older databases: unknown, so none
        rows = conn.execute(
            "SELECT u.id, u.text, u.intent FROM feedback f JOIN messages b ON b.id = f.message_id"
            " JOIN messages u ON u.id = b.reply_to WHERE f.rating > 0 AND u.role = 'user'"
            " AND u.intent IS NOT NULL AND u.out_of_scope = 0 AND b.reply_source = 'template' AND b.escalated = 0"
            " AND NOT EXISTS (SELECT 1 FROM feedback g WHERE g.message_id = f.message_id AND g.rating < 0"
            " AND g.id > f.id) ORDER BY u.id"
        ).fetchall()
        for r in rows:
            examples[r["id"]] = {"text": r["text"], "label": r["intent"], "source": "thumbs_up"}
    rows = conn.execute(
        "SELECT m.id, m.text, l.label, l.source, l.agent, l.created_at FROM labels l"
        " JOIN messages m ON m.id = l.message_id ORDER BY l.id"
    ).fetchall()
    for r in rows:
        examples[r["id"]] = {"text": r["text"], "label": r["label"], "source": r["source"], "agent": r["agent"],
                             "labelled_at": r["created_at"]}
    return [examples[k] for k in sorted(examples)]


def label_history(conn: sqlite3.Connection, session_id: str) -> dict[int, list[dict[str, Any]]]:
    """Every label given to each user message of a conversation, oldest first."""
    history: dict[int, list[dict[str, Any]]] = {}
    for r in conn.execute("SELECT message_id, label, source, agent, new_intent, created_at FROM labels"
                          " WHERE session_id = ? ORDER BY id", (session_id,)):
        history.setdefault(r["message_id"], []).append(
            {"label": r["label"], "source": r["source"], "agent": r["agent"], "new_intent": bool(r["new_intent"]),
             "created_at": r["created_at"]})
    return history


def confirmed_new_intents(conn: sqlite3.Connection) -> list[str]:
    """Labels outside the classifier that an agent confirmed as a new intent."""
    return [r[0] for r in conn.execute("SELECT DISTINCT label FROM labels WHERE new_intent = 1 ORDER BY label")]


def record_action(conn: sqlite3.Connection, agent: str, action: str, session_id: str | None = None,
                  message_id: int | None = None, detail: str | None = None) -> None:
    """The audit trail: who did what to which conversation, and when."""
    conn.execute("INSERT INTO agent_actions(agent, action, session_id, message_id, detail, created_at)"
                 " VALUES (?,?,?,?,?,?)", (agent, action, session_id, message_id, detail, time.time()))


def session_actions(conn: sqlite3.Connection, session_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT agent, action, message_id, detail, created_at FROM agent_actions"
                        " WHERE session_id = ? ORDER BY id", (session_id,))
    return [dict(r) for r in rows]
