"""`convssl` command line: one module per verb in this package.

A verb module defines `HELP` (one line), `add_arguments(parser)` and `run(args) -> int`; a verb
with a config also defines `build_config(args)`, which `--print-config` prints instead of running.
Verbs are discovered from the module names, so adding a verb is adding one file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import sys
from types import ModuleType

from convssl import __version__

VERB_ORDER = ["prepare", "tokenizer", "pretrain", "evaluate", "finetune", "serve", "feedback", "agents"]


class UserError(Exception):
    """An error caused by the user's input: printed as one clear line, no traceback."""


def require_given(*rules: tuple[object, str]) -> None:
    """Raise a UserError with the message of the first required input that was not given (empty)."""
    for value, message in rules:
        if not value:
            raise UserError(message)


def _verb_modules() -> dict[str, ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")]
    ordered = [n for n in VERB_ORDER if n in names] + sorted(n for n in names if n not in VERB_ORDER)
    return {name: importlib.import_module(f"convssl.cli.{name}") for name in ordered}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="convssl",
        description="Self-supervised learning for conversational AI.",
    )
    parser.add_argument("--version", action="version", version=f"convssl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    from convssl.tracking.command import TRACKED_VERBS, add_tracking_arguments, add_tracking_uri_argument

    for name, module in _verb_modules().items():
        verb_parser = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(verb_parser)
        if name in TRACKED_VERBS:
            add_tracking_arguments(verb_parser)
        elif name == "serve":
            add_tracking_uri_argument(verb_parser)
        verb_parser.set_defaults(_run=module.run, _build_config=getattr(module, "build_config", None))
    return parser


def resolve_model_references(args: argparse.Namespace) -> None:
    """`models:/NAME@ALIAS` wherever a verb takes a model (`--model`, `classifier_path=`) becomes the
    registered version's local folder, downloaded once; the verbs only ever see folders."""
    from convssl.tracking.references import MODELS_PREFIX, ModelReferenceError, resolve_in_args

    values = [v for v in vars(args).values() if isinstance(v, (str, list))]
    if any(MODELS_PREFIX in str(v) for v in values):
        try:
            resolve_in_args(args)
        except ModelReferenceError as exc:
            raise UserError(str(exc)) from exc


def main(argv: list[str] | None = None) -> int:
    from convssl.tracking.command import tracked

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        resolve_model_references(args)
        if getattr(args, "print_config", False):  # prints what a run would use, runs and tracks nothing
            from convssl.cli._config import print_config

            print_config(args._build_config(args))
            return 0
        return tracked(args.verb, args, argv, args._run)
    except UserError as exc:
        print(f"convssl {args.verb}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"convssl {args.verb}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # config and data errors carry their own clear messages
        from convssl.config import ConfigError

        if isinstance(exc, (ConfigError, FileNotFoundError)) and not os.environ.get("CONVSSL_DEBUG"):
            print(f"convssl {args.verb}: error: {exc}", file=sys.stderr)
            return 2
        raise
