"""The run context the CLI dispatcher wraps around every verb that trains or measures.

Start-up costs the command nothing: mlflow is imported and the run created in a background thread
while the verb loads its data. While the verb runs, the same thread sends new lines of
`RUN/metrics.jsonl` every few seconds (batched, never inside a training step). At the end the
whole folder is recorded and `RUN/tracking.json` written. When the store cannot be reached the
command goes on, the user is told once, and `convssl tracking sync RUN` sends the run later.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convssl.tracking.settings import TrackingSettings

TRACKED_VERBS = ("prepare", "pretrain", "evaluate", "finetune")
TAIL_SECONDS = 10.0  # how often new metrics.jsonl lines are sent; CONVSSL_TRACKING_INTERVAL overrides
VERSIONED_PACKAGES = ("convssl", "torch", "transformers", "tokenizers", "mlflow", "numpy")
INTERRUPTED = 130  # the exit code of a command stopped by Ctrl-C (pretraining saves a checkpoint first)
_OVERRIDE_PREFIXES = ("tracking=", "tracking.uri=", "tracking.experiment=")


def add_tracking_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("experiment tracking (MLflow)")
    group.add_argument("--tracking-uri", metavar="URI",
                       help="MLflow tracking server or store (default $MLFLOW_TRACKING_URI, else the SQLite "
                            "file runs/mlflow/mlflow.db); same as tracking.uri=URI")
    group.add_argument("--experiment", metavar="NAME", help="MLflow experiment (default convssl)")
    group.add_argument("--no-tracking", action="store_true", help="record nothing in MLflow; same as tracking=false")


def add_tracking_uri_argument(parser: argparse.ArgumentParser) -> None:
    """For verbs that only read the registry (`serve classifier_path=models:/NAME@ALIAS`)."""
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="MLflow server or store that models:/ references are read from "
                             "(default $MLFLOW_TRACKING_URI, else runs/mlflow/mlflow.db)")


def pop_tracking_overrides(args: argparse.Namespace) -> dict[str, str]:
    """`tracking=false`, `tracking.uri=...` among a verb's key=value items belong to the dispatcher."""
    found: dict[str, str] = {}
    for attr in ("overrides", "items"):
        items = getattr(args, attr, None)
        if not isinstance(items, list):
            continue
        kept = []
        for item in items:
            if isinstance(item, str) and item.startswith(_OVERRIDE_PREFIXES):
                key, value = item.split("=", 1)
                found[key] = value
            else:
                kept.append(item)
        setattr(args, attr, kept)
    return found


def settings_from_args(args: argparse.Namespace) -> TrackingSettings:
    overrides = pop_tracking_overrides(args)
    switch = "false" if getattr(args, "no_tracking", False) else overrides.get("tracking")
    return TrackingSettings.from_values(getattr(args, "tracking_uri", None) or overrides.get("tracking.uri"),
                                        getattr(args, "experiment", None) or overrides.get("tracking.experiment"),
                                        switch)


def git_commit() -> str | None:
    """The commit of the convssl checkout, when it is one (an installed wheel has none)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def package_versions() -> dict[str, str]:
    # importlib.metadata costs ~0.1-0.8 s to import: only ever called from the tracking thread.
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def _user() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (containers)
        return "unknown"


def command_line(argv: list[str]) -> str:
    import shlex

    return shlex.join(["convssl", *argv])[:5000]


def run_tags(verb: str, argv: list[str]) -> dict[str, str]:
    tags = {
        "mlflow.runName": f"{verb}-{time.strftime('%Y%m%d-%H%M%S')}",
        "mlflow.source.name": f"convssl {verb}",
        "mlflow.source.type": "LOCAL",
        "mlflow.user": _user(),
        "convssl.verb": verb,
        "convssl.command": command_line(argv),
        "convssl.cwd": os.getcwd(),
    }
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    tags.update({f"version.{k}": v for k, v in package_versions().items()})
    return tags


class CommandRun:
    """One command's MLflow run: opened in the background, fed while running, closed at the end."""

    def __init__(self, verb: str, argv: list[str], settings: TrackingSettings, out: str | None) -> None:
        from convssl.tracking.recorder import Manifest

        self.settings = settings
        self.out = Path(out) if out else None
        self.argv = argv
        # Tags (git commit, package versions) are filled in by the tracking thread, off the start-up path.
        self.manifest = Manifest(verb, command_line(argv), settings.uri, settings.experiment, int(time.time() * 1000))
        self.client: Any = None
        self.problem: str | None = None
        self._announced: Path | None = None
        # Folders that already belong to an earlier run: a failed command never takes them over.
        self._taken = {self.out} if self.out is not None and (self.out / "tracking.json").exists() else set()
        self._abandoned = threading.Event()
        self._stop = threading.Event()
        self.thread_cpu_seconds = 0.0
        self._thread = threading.Thread(target=self._work, name="convssl-tracking", daemon=True)

    def start(self) -> CommandRun:
        from convssl.runs import RUN_DIR_LISTENERS

        RUN_DIR_LISTENERS.append(self._note_run_dir)
        self._thread.start()
        return self

    def _note_run_dir(self, path: Path) -> None:
        self.out = self._announced = Path(path)
        if (self._announced / "tracking.json").exists():
            self._taken.add(self._announced)

    def _work(self) -> None:
        started = time.thread_time()
        try:
            self._open_and_tail()
        finally:
            self.thread_cpu_seconds = time.thread_time() - started  # what tracking cost the CPU meanwhile

    def _open_and_tail(self) -> None:
        from convssl.tracking.recorder import mlflow_client, start_run

        self.manifest.tags = run_tags(self.manifest.verb, self.argv)
        try:
            self.client = mlflow_client(self.settings.uri)
            if self._abandoned.is_set():
                return
            self.manifest.run_id = start_run(self.client, self.manifest)
            if self._abandoned.is_set():  # the command failed on its input meanwhile: leave no trace
                self.client.delete_run(self.manifest.run_id)
                return
        except Exception as exc:  # noqa: BLE001 - any store failure must leave the command running
            self._unreachable(exc)
            return
        interval = float(os.environ.get("CONVSSL_TRACKING_INTERVAL") or TAIL_SECONDS)
        while not self._stop.wait(interval):
            self._send_new_metrics()
        if self._abandoned.is_set() and self.problem is None:
            with contextlib.suppress(Exception):  # nothing sent yet: no trace; else keep what was sent
                if self.manifest.metric_lines_sent == 0:
                    self.client.delete_run(self.manifest.run_id)
                else:
                    self.client.set_terminated(self.manifest.run_id, status="FAILED")

    def _send_new_metrics(self) -> None:
        from convssl.tracking.recorder import send_metrics, step_metrics

        if self.out is None or self.problem is not None:
            return
        try:
            rows, sent = step_metrics(self.out, self.manifest.metric_lines_sent, self.manifest.start_time)
            if rows:
                send_metrics(self.client, self.manifest.run_id, rows)
            self.manifest.metric_lines_sent = sent
        except Exception as exc:  # noqa: BLE001
            self._unreachable(exc)

    def _unreachable(self, exc: BaseException) -> None:
        if self.problem is not None:
            return
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        self.problem = first_line
        where = str(self.out) if self.out else "RUN"
        print(f"convssl: warning: tracking store {self.settings.uri} unreachable ({first_line}); the command "
              f"goes on and its run is kept in {where}/tracking.json: send it later with "
              f"`convssl tracking sync {where}`", file=sys.stderr, flush=True)

    def finish(self, status: str) -> None:
        """Record the folder and close the run; on any store error keep the manifest for a later sync."""
        from convssl.runs import RUN_DIR_LISTENERS
        from convssl.tracking.recorder import record_folder

        if self._note_run_dir in RUN_DIR_LISTENERS:
            RUN_DIR_LISTENERS.remove(self._note_run_dir)
        # The folder this command wrote: announced by the verb, or (finetune) its --out once it exists.
        folder = self._announced or (self.out if status == "FINISHED" else None)
        folder = folder if folder is not None and folder.is_dir() else None
        if status != "FINISHED" and (folder is None or folder in self._taken):
            # Bad input (nothing written) or a failure in another run's folder: the error is shown at
            # once, without waiting for mlflow, and neither the store nor the folder is touched.
            self._abandoned.set()
            self._stop.set()
            return
        self._stop.set()
        self._thread.join()
        self.manifest.status = status
        self.manifest.end_time = int(time.time() * 1000)
        if self.problem is None and self.manifest.run_id:
            try:
                record_folder(self.client, self.manifest, folder)
            except Exception as exc:  # noqa: BLE001
                self._unreachable(exc)
        self.manifest.error = self.problem
        if folder is not None:
            self.manifest.save(folder)
        if self.manifest.synced:
            print(f"tracking: MLflow run {self.manifest.run_id} (experiment {self.settings.experiment}) in "
                  f"{self.settings.uri}", file=sys.stderr, flush=True)


def tracked(verb: str, args: argparse.Namespace, argv: list[str], run: Callable[[argparse.Namespace], int]) -> int:
    """Run a verb inside an MLflow run (or plainly when tracking is off or the verb is not tracked)."""
    if verb not in TRACKED_VERBS:
        return run(args)
    settings = settings_from_args(args)
    if not settings.enabled or int(os.environ.get("RANK", "0")) != 0:
        return run(args)
    out = getattr(args, "out", None) or getattr(args, "cfg.out", None)  # --out, or an option mapped to `out`
    session = CommandRun(verb, argv, settings, out).start()
    status = "FAILED"
    try:
        code = int(run(args) or 0)
        status = "FINISHED" if code == 0 else "KILLED" if code == INTERRUPTED else "FAILED"
        return code
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        session.finish(status)
