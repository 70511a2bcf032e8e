"""`convssl registry`: share models between teams through MLflow's model registry.

    convssl registry register runs/mini-mlm --name dialogue-encoder --alias champion
    convssl registry list
    convssl registry alias dialogue-encoder challenger 2
    convssl registry lineage dialogue-encoder@champion
    convssl registry compare banking-intent champion challenger

Every other verb that takes a model (`finetune --model`, `evaluate --model`, `serve
classifier_path=`) also takes `models:/NAME@ALIAS` or `models:/NAME/VERSION`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from convssl.cli import UserError

HELP = "model registry on MLflow: register versions, move aliases (champion), show lineage, compare"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow server or store (default $MLFLOW_TRACKING_URI, else runs/mlflow/mlflow.db)")
    # --tracking-uri works before or after the action (`registry register RUN --tracking-uri URI`).
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--tracking-uri", metavar="URI", default=argparse.SUPPRESS, help="as above")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = sub.add_parser("list", parents=[common], help="registered models, or one model's versions with aliases and metrics")
    listing.add_argument("name", nargs="?", help="a registered model: list its versions")
    reg = sub.add_parser("register", parents=[common], help="register a run's model folder as a new version")
    reg.add_argument("folder", help="a `convssl pretrain` run (its final/), or a `convssl finetune` classifier folder")
    reg.add_argument("--name", required=True, help="registered model name, e.g. dialogue-encoder")
    reg.add_argument("--alias", action="append", default=[], help="set this alias on the new version (repeatable)")
    reg.add_argument("--description", help="one line saying what this version is for")
    reg.add_argument("--experiment", default="convssl", help="experiment for a register run of an untracked folder")
    alias = sub.add_parser("alias", parents=[common], help="set or move an alias to a version (or --delete it)")
    alias.add_argument("name")
    alias.add_argument("alias", help="champion, challenger or any name")
    alias.add_argument("version", nargs="?", help="version number (or another alias) the alias points to")
    alias.add_argument("--delete", action="store_true", help="remove the alias")
    lin = sub.add_parser("lineage", parents=[common], help="data fingerprints, parent runs and commands behind a version")
    lin.add_argument("model", help="NAME@ALIAS, NAME/VERSION or models:/...")
    lin.add_argument("--json", action="store_true", help="print JSON instead of text")
    cmp = sub.add_parser("compare", parents=[common], help="two versions' metrics side by side")
    cmp.add_argument("name")
    cmp.add_argument("first", help="version or alias")
    cmp.add_argument("second", help="version or alias")


def run(args: argparse.Namespace) -> int:
    from convssl.tracking.recorder import mlflow_client
    from convssl.tracking.registry import RegistryError
    from convssl.tracking.settings import resolve_uri

    uri = resolve_uri(args.tracking_uri)
    try:
        if args.action == "register":
            return _register(args, uri)
        client = mlflow_client(uri)
        return {"list": _list, "alias": _alias, "lineage": _lineage, "compare": _compare}[args.action](client, args)
    except RegistryError as exc:
        raise UserError(str(exc)) from exc
    except Exception as exc:
        from mlflow.exceptions import MlflowException

        if isinstance(exc, MlflowException):
            raise UserError(f"registry at {uri}: {str(exc).splitlines()[0][:300]}") from exc
        raise


def _register(args: argparse.Namespace, uri: str) -> int:
    from convssl.tracking.registry import register

    version = register(args.folder, args.name, uri, args.alias, args.description, args.experiment)
    aliases = f" (aliases: {', '.join(sorted(version.aliases))})" if version.aliases else ""
    print(f"registered {args.folder} as {version.name} version {version.version}{aliases}")
    print(f"use it as models:/{version.name}/{version.version}"
          + (f" or models:/{version.name}@{sorted(version.aliases)[0]}" if version.aliases else ""))
    return 0


def _table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console(highlight=False, width=160).print(table)


def _list(client: Any, args: argparse.Namespace) -> int:
    if not args.name:
        models = client.search_registered_models()
        rows = []
        for model in models:
            versions = client.search_model_versions(f"name='{model.name}'")
            latest = max((int(v.version) for v in versions), default=0)
            aliases = ", ".join(f"{a}->{v}" for a, v in sorted((model.aliases or {}).items()))
            rows.append([model.name, str(latest), aliases or "-", model.description or ""])
        _table("registered models", ["name", "latest version", "aliases", "description"], rows)
        if not models:
            print("no registered models yet: `convssl registry register RUN --name NAME`")
        return 0
    versions = sorted(client.search_model_versions(f"name='{args.name}'"), key=lambda v: int(v.version))
    if not versions:
        raise UserError(f"no registered model {args.name!r} (see `convssl registry list`)")
    by_version: dict[str, list[str]] = {}
    for alias, number in (client.get_registered_model(args.name).aliases or {}).items():
        by_version.setdefault(str(number), []).append(alias)
    rows = []
    for v in versions:
        metrics = client.get_run(v.run_id).data.metrics if v.run_id else {}
        shown = ", ".join(f"{k} {val:.4g}" for k, val in sorted(metrics.items()) if k.startswith(("test.", "final.")))[:80]
        rows.append([str(v.version), ", ".join(sorted(by_version.get(str(v.version), []))) or "-", (v.tags or {}).get("convssl.kind", ""),
                     v.run_id or "-", shown])
    _table(f"{args.name}: versions", ["version", "aliases", "kind", "run", "metrics"], rows)
    return 0


def _alias(client: Any, args: argparse.Namespace) -> int:
    from convssl.tracking.registry import version_of

    if args.delete:
        client.delete_registered_model_alias(args.name, args.alias)
        print(f"removed alias {args.alias} of {args.name}")
        return 0
    if not args.version:
        raise UserError("which version? `convssl registry alias NAME ALIAS VERSION` (or --delete)")
    target = version_of(client, f"{args.name}/{args.version}" if args.version.isdigit() else f"{args.name}@{args.version}")
    before = None
    try:
        before = client.get_model_version_by_alias(args.name, args.alias).version
    except Exception:  # noqa: BLE001 - the alias is new
        before = None
    client.set_registered_model_alias(args.name, args.alias, target.version)
    moved = f" (was version {before})" if before and before != target.version else ""
    print(f"{args.name}@{args.alias} -> version {target.version}{moved}")
    return 0


def _lineage(client: Any, args: argparse.Namespace) -> int:
    from convssl.tracking.registry import lineage

    info = lineage(client, args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    aliases = f" ({', '.join(info['aliases'])})" if info["aliases"] else ""
    print(f"{info['name']} version {info['version']}{aliases}: weights fingerprint {info['fingerprint']}, run {info['run_id']}")
    for number, step in enumerate(info["steps"], 1):
        commit = f" at commit {step['commit'][:10]}" if step["commit"] else ""
        print(f"{number}. {step['verb']} run {step['run_id']} ({step['status']}){commit}")
        for item in step["data"]:
            print(f"     {item['context'] or 'input'}: {item['name']} fingerprint {item['digest']}")
        where = f" (in {step['cwd']})" if step.get("cwd") else ""
        print(f"     reproduce{where}: {step['command']}")
    return 0


def _compare(client: Any, args: argparse.Namespace) -> int:
    from convssl.tracking.registry import compare

    versions, rows = compare(client, args.name, args.first, args.second)

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.4g}"

    def delta(a: float | None, b: float | None) -> str:
        return "" if a is None or b is None else f"{b - a:+.4g}"

    titles = [f"v{v.version}" + (f" ({', '.join(sorted(v.aliases))})" if v.aliases else "") for v in versions]
    _table(f"{args.name}: {args.first} vs {args.second}", ["metric", *titles, "change"],
           [[k, cell(a), cell(b), delta(a, b)] for k, (a, b) in rows])
    return 0
