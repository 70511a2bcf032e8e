"""`convssl tracking`: where runs are recorded, and sending runs kept locally during an outage."""

from __future__ import annotations

import argparse
from pathlib import Path

from convssl.cli import UserError

HELP = "experiment tracking: show the MLflow store, sync runs recorded while it was unreachable"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sync = sub.add_parser("sync", help="send run folders whose tracking was kept locally (RUN/tracking.json)")
    sync.add_argument("runs", nargs="+", metavar="RUN", help="run folders (prepare, pretrain, evaluate, finetune outputs)")
    sync.add_argument("--tracking-uri", metavar="URI", help="send them here instead of the store they were meant for")
    where = sub.add_parser("uri", help="print the tracking URI in effect and how to open the MLflow UI on it")
    where.add_argument("--tracking-uri", metavar="URI")


def run(args: argparse.Namespace) -> int:
    from convssl.tracking.settings import is_local, resolve_uri

    if args.action == "uri":
        uri = resolve_uri(args.tracking_uri)
        print(uri)
        if is_local(uri):
            print(f"open it with: mlflow ui --backend-store-uri {uri} --port 5000")
        return 0
    return _sync(args.runs, args.tracking_uri)


def _sync(runs: list[str], uri: str | None) -> int:
    from convssl.tracking.recorder import MANIFEST, Manifest, sync_folder
    from convssl.tracking.settings import resolve_uri

    failed = 0
    for run_dir in map(Path, runs):
        if not (run_dir / MANIFEST).exists():
            raise UserError(f"{run_dir / MANIFEST} does not exist: {run_dir} is not a run folder of a tracked command")
        if Manifest.load(run_dir).synced and uri is None:
            print(f"{run_dir}: already recorded")
            continue
        try:
            manifest = sync_folder(run_dir, resolve_uri(uri) if uri else None)
        except Exception as exc:  # noqa: BLE001 - one unreachable store must not stop the other folders
            print(f"{run_dir}: not sent ({str(exc).splitlines()[0][:300]}); try again later")
            failed += 1
            continue
        print(f"{run_dir}: recorded as MLflow run {manifest.run_id} in {manifest.tracking_uri}")
    return 1 if failed else 0
