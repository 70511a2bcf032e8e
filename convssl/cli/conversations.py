"""`convssl conversations test`: run written test conversations against the bot, like `rasa test`.

In process (the default) it starts the bot from a serve config and a classifier on a free loopback
port with a temporary database, so the tests go through the same HTTP API, policy and database
as users do; with `--url` it talks to a bot that is already running.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from convssl.cli import UserError

HELP = "test the bot with written conversations (expected outcome per turn); report accuracy and failures"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    test = sub.add_parser("test", help="run conversation tests and write report.md / report.json",
                          description="Run conversation tests (YAML) against the bot and score every turn.")
    test.add_argument("items", nargs="+", metavar="FILE | key=value",
                      help="conversation YAML files, or shipped sets by name (conversations/banking77), then "
                           "serve config overrides, e.g. escalation.clarify_margin=0.05")
    test.add_argument("--config", default="serve", help="serve config file or preset for the bot (default serve)")
    test.add_argument("--classifier", metavar="DIR", help="intent classifier folder (sets classifier_path)")
    test.add_argument("--url", help="test a running bot at this URL instead of starting one")
    test.add_argument("--agent-token", default="",
                      help="with --url: the agent token, for agent turns and the intent check (or $CONVSSL_AGENT_TOKEN)")
    test.add_argument("--out", default="runs/conversation-tests", metavar="DIR",
                      help="report folder (default runs/conversation-tests)")
    test.add_argument("--fail-under", type=float, default=0.0, metavar="FRACTION",
                      help="exit 1 when the share of turns with the right outcome is below this (e.g. 0.9)")
    test.add_argument("--fail-under-conversations", type=float, default=0.0, metavar="FRACTION",
                      help="exit 1 when the share of fully right conversations is below this (e.g. 0.8)")


def conversation_file(name: str) -> Path:
    from convssl.config import preset_path

    path = Path(name)
    if path.exists():
        return path
    shipped = preset_path(name)
    if shipped is None:
        raise UserError(f"{name}: no such conversation file (nor a shipped set under convssl/configs/)")
    return shipped


def run(args: argparse.Namespace) -> int:
    import logging

    from convssl.serve.conversation_tests import ConversationFileError, load_conversations

    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request would bury the summary
    for value, flag in ((args.fail_under, "--fail-under"), (args.fail_under_conversations, "--fail-under-conversations")):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{flag} is a fraction between 0 and 1, not {value}")
    args.overrides = [i for i in args.items if "=" in i and not Path(i).exists()]
    files = [conversation_file(i) for i in args.items if i not in args.overrides]
    if not files:
        raise UserError("no conversation file given")
    try:  # the format first, so a typo stops the run before any model is loaded
        for path in files:
            load_conversations(path)
    except ConversationFileError as exc:
        raise UserError(str(exc)) from exc
    if args.url:
        return _against_url(args, files)
    return _in_process(args, files)


def _load_all(files: list[Path], labels: list[str] | None):
    from convssl.serve.conversation_tests import ConversationFileError, load_conversations

    conversations = []
    try:
        for path in files:
            conversations += load_conversations(path, labels)
    except ConversationFileError as exc:
        raise UserError(str(exc)) from exc
    names = [c.name for c in conversations]
    if len(set(names)) != len(names):
        raise UserError("conversation names must be unique across the files")
    return conversations


def _in_process(args: argparse.Namespace, files: list[Path]) -> int:
    from convssl.config import load_config
    from convssl.downstream.intent_classifier import read_labels
    from convssl.serve.analysis import Brain
    from convssl.serve.app import BackgroundServer, create_app
    from convssl.serve.config import ServeConfig
    from convssl.serve.conversation_tests import ChatClient

    overrides = list(args.overrides)
    if args.classifier:
        overrides.append(f"classifier_path={args.classifier}")
    config = load_config(ServeConfig, args.config, overrides)
    if not config.classifier_path or not Path(config.classifier_path).exists():
        raise UserError(f"classifier folder {config.classifier_path or '(none)'} does not exist: pass "
                        "--classifier DIR (a `convssl finetune` output folder)")
    try:
        labels = read_labels(config.classifier_path)
    except (OSError, ValueError) as exc:
        raise UserError(f"{config.classifier_path} is not an intent classifier folder: {exc}") from exc
    conversations = _load_all(files, labels)  # unknown intents stop here, before the models load
    with tempfile.TemporaryDirectory(prefix="convssl-conversations-") as tmp:
        # A private bot: its own database with one agent account for the agent turns, no rate limits.
        config.db_path = str(Path(tmp) / "serve.sqlite3")
        config.agent_token = ""
        token = tester_account(config.db_path)
        config.limits.requests_per_minute = 0
        config.limits.max_sessions_per_minute = 0
        print(f"loading the bot (classifier {config.classifier_path}, config {args.config})", flush=True)
        try:
            brain = Brain.load(config)
        except (FileNotFoundError, ValueError) as exc:
            raise UserError(str(exc)) from exc
        with BackgroundServer(create_app(config, brain)) as server:
            client = ChatClient(server.url, token)
            try:
                results = _run(client, conversations)
            finally:
                client.close()
                brain.close()
    meta = {"files": ", ".join(map(str, files)), "classifier": config.classifier_path, "config": args.config,
            "overrides": " ".join(args.overrides) or "none"}
    return _report(args, results, meta)


def tester_account(db_path: str) -> str:
    """An agent account in a fresh serve database; its token drives the agent turns."""
    from convssl.serve import accounts, db
    from convssl.serve.conversation_tests import TESTER

    conn = db.connect(db_path)
    try:
        db.migrate(conn)
        return accounts.create_agent(conn, TESTER)
    finally:
        conn.close()


def _against_url(args: argparse.Namespace, files: list[Path]) -> int:
    import os

    import httpx

    from convssl.serve.conversation_tests import ChatClient, needs_agent_api

    token = args.agent_token or os.environ.get("CONVSSL_AGENT_TOKEN", "")
    labels = None
    if token:
        try:
            response = httpx.get(f"{args.url.rstrip('/')}/v1/agent/labels", timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})
        except httpx.HTTPError as exc:
            raise UserError(f"cannot reach {args.url}: {exc}") from exc
        if response.status_code == 200:
            labels = list(response.json().get("labels", []))
    conversations = _load_all(files, labels)
    if needs_agent_api(conversations) and not token:
        raise UserError("these conversations have agent turns: pass --agent-token (or set CONVSSL_AGENT_TOKEN)")
    client = ChatClient(args.url, token)
    try:
        results = _run(client, conversations)
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach {args.url}: {exc}") from exc
    finally:
        client.close()
    meta = {"files": ", ".join(map(str, files)), "url": args.url}
    return _report(args, results, meta)


def _run(client, conversations):
    from convssl.serve.conversation_tests import run_conversations
    from convssl.utils.progress import progress_bar

    with progress_bar(len(conversations), "conversations", unit="conv", leave=True) as bar:
        try:
            return run_conversations(client, conversations, progress=bar.update)
        except RuntimeError as exc:
            raise UserError(str(exc)) from exc


def _report(args: argparse.Namespace, results, meta: dict[str, str]) -> int:
    from convssl.serve.conversation_report import write_report

    summary = write_report(args.out, results, meta)
    turn_acc, conv_acc = summary["turn_accuracy"] or 0.0, summary["conversation_accuracy"] or 0.0
    print(f"turns: {summary['turns_right']}/{summary['turns']} right ({100 * turn_acc:.1f}%); conversations: "
          f"{summary['conversations_passed']}/{summary['conversations']} fully right ({100 * conv_acc:.1f}%); "
          f"unexpected escalations: {len(summary['unexpected_escalations'])}")
    for c in summary["confusions"][:5]:
        print(f"  expected {c['expected']}, got {c['got']}: {c['count']}")
    print(f"report: {Path(args.out) / 'report.md'} (and report.json)")
    failed = []
    if turn_acc < args.fail_under:
        failed.append(f"turn accuracy {100 * turn_acc:.1f}% < {100 * args.fail_under:.1f}%")
    if conv_acc < args.fail_under_conversations:
        failed.append(f"conversation accuracy {100 * conv_acc:.1f}% < {100 * args.fail_under_conversations:.1f}%")
    if failed:
        print("FAILED: " + "; ".join(failed))
        return 1
    return 0
