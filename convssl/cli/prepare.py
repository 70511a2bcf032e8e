"""`convssl prepare INPUT... --out DIR`: read, curate, split, report, tokenise and shard."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from convssl.cli import UserError, require_given
from convssl.cli._config import add_config_options, config_values

HELP = "read chat logs and intent sets, curate them, write splits, a report, a tokenizer and shards"

_OVERRIDE = re.compile(r"^[A-Za-z_][\w.]*=")


def _allow_intermixed(parser: argparse.ArgumentParser) -> None:
    """Let inputs and overrides sit on both sides of options (`a.json --out D b.json k=v`).

    Plain argparse stops filling a `nargs="*"` positional at the first option, so anything after
    `--out DIR` would be "unrecognized". The subcommand action calls `parse_known_args` on this
    parser; route that call through argparse's intermixed parser instead.
    """

    def intermixed(args: Any = None, namespace: Any = None) -> Any:
        del parser.parse_known_args  # the intermixed parser calls the class method itself
        try:
            return parser.parse_known_intermixed_args(args, namespace)
        finally:
            parser.parse_known_args = intermixed  # type: ignore[method-assign]

    parser.parse_known_args = intermixed  # type: ignore[method-assign]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    _allow_intermixed(parser)
    parser.add_argument(
        "items", nargs="*", metavar="INPUT|key=value",
        help="input files or folders (default: the chitchat corpus; the word 'chitchat' names it too), "
             "then config overrides such as dedup.threshold=0.9",
    )
    parser.add_argument("--out", "-o", metavar="DIR", help="output folder (required)")
    parser.add_argument("--format", choices=["chitchat", "sgd", "jsonl", "csv", "text", "intents"],
                        dest="cfg.inputs.format", help="read every input as this format instead of detecting it")
    parser.add_argument("--strict", action="store_const", const=True, dest="cfg.inputs.strict",
                        help="stop at the first malformed record")
    parser.add_argument("--config", metavar="FILE", help="YAML config or preset name (default: prepare)")
    parser.add_argument("--no-tokenize", action="store_const", const=False, dest="cfg.tokenizer.enabled",
                        help="skip the tokenizer and the shards")
    parser.add_argument("--tokenizer", dest="cfg.tokenizer.path", metavar="PATH",
                        help="reuse this local tokenizer/model folder")
    parser.add_argument("--limit", type=int, dest="cfg.inputs.limit", metavar="N",
                        help="read at most N records per input")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_options(parser, "convssl.data.config:PrepareConfig", "prepare")


def split_items(items: list[str]) -> tuple[list[str], list[str]]:
    """Inputs are paths; `key=value` items that are not existing paths are config overrides."""
    inputs, overrides = [], []
    for item in items:
        if _OVERRIDE.match(item) and not Path(item).exists():
            overrides.append(item)
        else:
            inputs.append(item)
    return inputs, overrides


def build_config(args: argparse.Namespace) -> Any:
    """Preset or file, then `key=value` overrides, then the inputs and options (which win)."""
    from convssl.config import load_config
    from convssl.data.config import PrepareConfig

    inputs, overrides = split_items(args.items)
    values = config_values(args)
    if inputs:
        values["inputs.paths"] = inputs
    try:
        return load_config(PrepareConfig, args.config or "prepare", overrides, values)
    except ValueError as exc:
        raise UserError(str(exc)) from exc


def check_inputs(paths: list[str]) -> None:
    """Every input exists: checked before the output folder is created."""
    from convssl.data.readers import CHITCHAT_NAMES

    for path in paths:
        if not Path(path).exists() and path.lower() not in CHITCHAT_NAMES:
            raise UserError(f"input {path} does not exist")


def run(args: argparse.Namespace) -> int:
    from convssl.data.pipeline import run_prepare
    from convssl.data.rejects import DataError
    from convssl.runs import prepare_run_dir

    config = build_config(args)
    require_given((args.out, "no output folder given: pass --out DIR"))
    check_inputs(config.inputs.paths)
    out = prepare_run_dir(args.out, config)
    print(f"convssl prepare: writing to {out} (log {out / 'run.log'})", flush=True)
    try:
        report = run_prepare(config, out, progress=not args.no_progress)
    except DataError as exc:
        raise UserError(f"{exc} (strict mode; rerun without --strict to log bad records to {out / 'rejects.jsonl'})") \
            from exc
    except ValueError as exc:  # bad option values (e.g. an unknown language or PII type)
        raise UserError(str(exc)) from exc
    print_summary(report, out)
    if report["counts"]["dialogues_kept"] == 0 and report["counts"]["intents_kept"] == 0:
        print(f"convssl prepare: error: nothing usable was read; see {out / 'rejects.jsonl'}", file=sys.stderr)
        return 1
    return 0


def print_summary(report: dict[str, Any], out: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=False, highlight=False)
    c = report["counts"]
    table = Table(title="convssl prepare", show_lines=False)
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("records read", f"{c['records_read']:,}")
    table.add_row("rejected as malformed", f"{c['rejected']:,}")
    for reason, n in report["rejects"].items():
        table.add_row(f"  {reason}", f"{n:,}")
    table.add_row("removed by filters", f"{c['dialogues_removed']:,}")
    for stage in report["stages"]:
        for reason, n in stage["removed"].items():
            table.add_row(f"  {stage['stage']}: {reason}", f"{n:,}")
    if c["dialogues_read"] or not c["intents_read"]:
        table.add_row("dialogues kept", f"{c['dialogues_kept']:,} of {c['dialogues_read']:,}")
        for name, s in report["splits"].items():
            table.add_row(f"  {name}", f"{s['dialogues']:,} dialogues, {s['turns']:,} turns")
    if c["intents_read"]:
        table.add_row("intent examples kept", f"{c['intents_kept']:,} of {c['intents_read']:,}")
        for name, s in report["intents"].items():
            table.add_row(f"  {name}", f"{s['examples']:,} examples, {s['labels']:,} labels")
    if report.get("pii"):
        table.add_row("PII replaced", ", ".join(f"{k} {v:,}" for k, v in report["pii"].items()))
    for name, s in report.get("shards", {}).items():
        table.add_row(f"tokens {name}", f"{s['tokens']:,} in {s['shards']} shard(s)")
    if report.get("tokenizer_skipped"):
        table.add_row("tokenizer and shards", "not written")
    table.add_row("time", f"{report['timings']['total']:.1f} s")
    console.print(table)
    # Plain prints: a path must never be wrapped across lines, so it can be copied as it is.
    print(f"report:   {out / 'report.md'} (also report.json and plots/*.png)")
    print(f"rejects:  {out / 'rejects.jsonl'} ({c['rejected']:,} malformed records)")
    print(f"filtered: {out / 'filtered.jsonl'} ({c['dialogues_removed']:,} dialogues removed by filters)")
    if c["intents_kept"]:
        print(f"intents:  {out / 'intents'}/{{{','.join(report['intents'])}}}.jsonl")
    if report.get("tokenizer_skipped"):
        print(f"tokenizer and shards not written: {report['tokenizer_skipped']}")
