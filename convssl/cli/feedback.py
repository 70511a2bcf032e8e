"""`convssl feedback export`: the agents' labels (and liked bot answers) as a training set."""

from __future__ import annotations

import argparse
from pathlib import Path

from convssl.cli import UserError

HELP = "export feedback from a serve database as labelled JSONL (text,label) for `convssl finetune`"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = sub.add_parser("export", help="write agents' labels and corrections (+ thumbs-up'd predictions)")
    export.add_argument("--db", required=True, help="the SQLite database of `convssl serve`")
    export.add_argument("--out", required=True, help="output JSONL file ({\"text\", \"label\"} per line)")
    export.add_argument("--no-thumbs-up", action="store_true",
                        help="leave out bot predictions that users rated helpful; keep only agents' labels")


def run(args: argparse.Namespace) -> int:
    from convssl.serve.feedback import export_feedback

    if not Path(args.db).exists():
        raise UserError(f"database {args.db} does not exist")
    try:
        counts = export_feedback(args.db, args.out, include_thumbs_up=not args.no_thumbs_up)
    except ValueError as exc:
        raise UserError(str(exc)) from exc
    total = sum(counts.values())
    detail = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "nothing labelled yet"
    print(f"wrote {total} labelled examples to {args.out} ({detail})")
    return 0
