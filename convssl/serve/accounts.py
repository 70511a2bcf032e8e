"""Named agent accounts: one token per person, stored only as its SHA-256.

A token is 32 random bytes (`secrets.token_urlsafe`), so a plain SHA-256 is enough to store it
safely (a slow password hash protects low-entropy secrets; these are not). The server compares
the hash of the presented token with every active account's hash using `hmac.compare_digest`,
so the comparison time does not depend on how much of a hash matched. Revoking an account takes
effect on the next request: accounts are read from the database each time, not cached.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from typing import Any

NAME = re.compile(r"^[\w .'-]{1,64}$")
TOKEN_PREFIX = "cva_"


class AccountError(ValueError):
    """A bad account name, a duplicate or an unknown account: the message says which."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create_agent(conn: sqlite3.Connection, name: str) -> str:
    """Add an account; returns its token, which is shown once and never stored."""
    name = name.strip()
    if not NAME.match(name):
        raise AccountError(f"agent name {name!r}: use 1-64 letters, digits, spaces, '.', '-', '_' or \"'\"")
    if conn.execute("SELECT 1 FROM agents WHERE name = ? AND revoked_at IS NULL", (name,)).fetchone():
        raise AccountError(f"agent {name!r} already exists (revoke it first to issue a new token)")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    conn.execute("INSERT INTO agents(name, token_sha256, created_at) VALUES (?,?,?)", (name, hash_token(token), time.time()))
    return token


def revoke_agent(conn: sqlite3.Connection, name: str) -> None:
    """The token stops working; the row stays (the audit trail keeps its name), and the name may be
    given a new account."""
    cur = conn.execute("UPDATE agents SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL", (time.time(), name))
    if cur.rowcount == 0:
        raise AccountError(f"no active agent named {name!r}")


def list_agents(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT name, created_at, revoked_at FROM agents ORDER BY id").fetchall()
    return [{"name": r[0], "created_at": r[1], "revoked_at": r[2]} for r in rows]


def agent_for_token(conn: sqlite3.Connection, token: str) -> str | None:
    """The active account this token belongs to, or None."""
    if not token:
        return None
    presented = hash_token(token).encode()
    found = None
    for name, stored in conn.execute("SELECT name, token_sha256 FROM agents WHERE revoked_at IS NULL"):
        if hmac.compare_digest(presented, stored.encode()):
            found = name
    return found


def has_accounts(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM agents WHERE revoked_at IS NULL LIMIT 1").fetchone() is not None
