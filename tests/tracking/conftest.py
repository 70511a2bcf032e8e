"""Real MLflow stores for the tracking tests: one SQLite file and one `mlflow server` process.

The server takes tens of seconds to start on a busy machine, so it is launched as soon as the
first tracking test runs and only waited for by the tests that use it (test_server.py runs last).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests._server import free_port

MLFLOW = Path(sys.executable).with_name("mlflow")


@pytest.fixture(scope="session")
def sqlite_uri(tmp_path_factory) -> str:
    """A migrated SQLite store shared by the session (creating one costs ~10 s of migrations)."""
    from convssl.tracking.recorder import mlflow_client

    uri = "sqlite:///" + str(tmp_path_factory.mktemp("mlflow") / "mlflow.db")
    mlflow_client(uri).search_experiments()
    return uri


@pytest.fixture(scope="session")
def _server_process(tmp_path_factory):
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [str(MLFLOW), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    yield proc, f"http://127.0.0.1:{port}", root
    # `mlflow server` runs uvicorn as a child: stop the whole process group it leads.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log.close()


@pytest.fixture(autouse=True, scope="session")
def _start_server_early(_server_process):
    """Start `mlflow server` when the first tracking test runs; test_server.py waits for it."""


@pytest.fixture(scope="session")
def mlflow_server(_server_process) -> str:
    proc, url, root = _server_process
    deadline = time.time() + 240
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, (root / "server.log").read_text()
        assert time.time() < deadline, "mlflow server did not start within 240 s"
        time.sleep(0.5)


@pytest.fixture
def tracking_on(monkeypatch, sqlite_uri, tmp_path):
    """Commands in this test track into the session's SQLite store (the suite default is off)."""
    monkeypatch.setenv("CONVSSL_TRACKING", "true")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", sqlite_uri)
    monkeypatch.setenv("CONVSSL_TRACKING_DIR", str(tmp_path / "tracking"))
    return sqlite_uri
