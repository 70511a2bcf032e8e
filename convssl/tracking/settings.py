"""Where runs are tracked: `--tracking-uri`, `MLFLOW_TRACKING_URI`, or a local SQLite file.

The default store is `runs/mlflow/mlflow.db` under the working directory (or `CONVSSL_TRACKING_DIR`),
created on first use; artifacts of that store go to `runs/mlflow/artifacts`. A team points every
member at one `mlflow server` instead (docs/tracking.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_EXPERIMENT = "convssl"
OFF_VALUES = {"0", "false", "no", "off"}

# MLflow's own defaults wait 120 s per request and retry 7 times with growing back-off: minutes
# of silence when a team server is down. A training command must never hang on its bookkeeping.
NETWORK_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_ASYNC_LOGGING": "false",
}


def quiet_network_defaults() -> None:
    """Short HTTP timeouts and no telemetry, unless the user set these variables."""
    for key, value in NETWORK_DEFAULTS.items():
        os.environ.setdefault(key, value)


def tracking_dir() -> Path:
    return Path(os.environ.get("CONVSSL_TRACKING_DIR") or Path("runs") / "mlflow").absolute()


def default_uri() -> str:
    return "sqlite:///" + str(tracking_dir() / "mlflow.db")


def resolve_uri(explicit: str | None = None) -> str:
    """The tracking URI in order of precedence; a plain path means a local SQLite file there."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI") or default_uri()
    if "://" not in uri and not uri.startswith(("sqlite:", "databricks")):
        path = Path(uri).expanduser().absolute()
        uri = "sqlite:///" + str(path if path.suffix == ".db" else path / "mlflow.db")
    return uri


def is_local(uri: str) -> bool:
    return uri.startswith("sqlite:")


def local_artifact_root(uri: str) -> str | None:
    """Artifacts of a local SQLite store live beside the database file, not in the working directory."""
    if not is_local(uri):
        return None
    db = Path(uri.split("sqlite:///", 1)[-1])
    return (db.parent / "artifacts").as_uri()


def ensure_local_store(uri: str) -> None:
    if is_local(uri):
        Path(uri.split("sqlite:///", 1)[-1]).parent.mkdir(parents=True, exist_ok=True)


def tracking_enabled_by_env() -> bool:
    return os.environ.get("CONVSSL_TRACKING", "true").strip().lower() not in OFF_VALUES


@dataclass
class TrackingSettings:
    enabled: bool
    uri: str
    experiment: str

    @classmethod
    def from_values(cls, uri: str | None, experiment: str | None, switch: str | None) -> TrackingSettings:
        enabled = tracking_enabled_by_env() if switch is None else switch.strip().lower() not in OFF_VALUES
        return cls(enabled, resolve_uri(uri), experiment or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT)


def silence_mlflow_logs() -> None:
    """MLflow and alembic announce database migrations at INFO, and urllib3 warns at each retry
    against a dead server; convssl tells the user once itself."""
    import logging

    for name in ("mlflow", "alembic", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
