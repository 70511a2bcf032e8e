"""`convssl agents`: named agent accounts for the console and the agent API (create, revoke, list)."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from convssl.cli import UserError

HELP = "manage agent accounts of a serve database: create (prints the token once), revoke, list"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = sub.add_parser("create", help="add an agent account and print its token (shown only once)")
    create.add_argument("name", help="the person's name, shown in the console and the audit trail")
    revoke = sub.add_parser("revoke", help="stop an account's token from working (its history stays)")
    revoke.add_argument("name")
    sub.add_parser("list", help="list accounts with when they were created or revoked")
    for p in sub.choices.values():
        p.add_argument("--db", required=True, help="the SQLite database of `convssl serve` (created if missing)")


def run(args: argparse.Namespace) -> int:
    from convssl.serve import accounts, db

    conn = db.connect(args.db)
    try:
        db.migrate(conn)
        if args.action == "create":
            token = _user_error(accounts.create_agent, conn, args.name)
            print(f"created agent {args.name.strip()!r}; token (shown only this once, store it safely):")
            print(token)
        elif args.action == "revoke":
            _user_error(accounts.revoke_agent, conn, args.name)
            print(f"revoked agent {args.name!r}: the token no longer works")
        else:
            rows = accounts.list_agents(conn)
            if not rows:
                print("no agent accounts yet: `convssl agents create NAME --db DB`")
            for r in rows:
                state = f"revoked {_when(r['revoked_at'])}" if r["revoked_at"] else "active"
                print(f"{r['name']}\tcreated {_when(r['created_at'])}\t{state}")
    finally:
        conn.close()
    return 0


def _user_error(fn, *args):
    from convssl.serve.accounts import AccountError

    try:
        return fn(*args)
    except AccountError as exc:
        raise UserError(str(exc)) from exc


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")
