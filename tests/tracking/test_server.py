"""Against a real `mlflow server` process (a team's shared server): a tracked command, the registry
from two processes at once, `models:/` downloads through the server, and its web UI in a browser.

Runs last among the tracking tests: the server starts in the background while the others run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from convssl.cli import main
from convssl.tracking.references import resolve_model_uri
from tests.evaluate import slices
from tests.tracking.test_unreachable import write_chats

tiny_bert = slices.tiny_bert
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("CONVSSL_SCREENSHOTS") or tempfile.mkdtemp(prefix="convssl-screenshots-"))


@pytest.fixture(scope="module")
def team_run(mlflow_server, tmp_path_factory):
    """One `convssl prepare` tracked on the team server, as a colleague would run it."""
    out = tmp_path_factory.mktemp("team") / "prepared"
    src = write_chats(tmp_path_factory.mktemp("chats"))
    os.environ["CONVSSL_TRACKING"] = "true"
    try:
        assert main(["prepare", str(src), "--out", str(out), "--no-tokenize", "--no-progress",
                     "--tracking-uri", mlflow_server, "--experiment", "team"]) == 0
    finally:
        os.environ["CONVSSL_TRACKING"] = "false"
    return out, json.loads((out / "tracking.json").read_text())


def test_a_command_tracked_on_the_server(mlflow_server, team_run, tmp_path):
    from mlflow import MlflowClient

    out, manifest = team_run
    assert manifest["synced"] and manifest["tracking_uri"] == mlflow_server
    client = MlflowClient(mlflow_server)
    run = client.get_run(manifest["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["convssl.command"].startswith("convssl prepare")
    assert run.data.metrics["counts.dialogues_kept"] > 0
    report = client.download_artifacts(run.info.run_id, "report.md", str(tmp_path))  # through the server's proxy
    assert Path(report).read_text() == (out / "report.md").read_text()


def test_two_processes_register_at_once_and_get_distinct_versions(mlflow_server, tiny_bert, tmp_path, monkeypatch):
    command = [sys.executable, "-m", "convssl", "registry", "--tracking-uri", mlflow_server, "register",
               str(tiny_bert), "--name", "shared-encoder"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    numbers = sorted(out.split("version ")[1].split()[0] for out, _ in outputs)
    assert numbers == ["1", "2"]

    # Either version downloads through the server into a plain model folder.
    monkeypatch.setenv("CONVSSL_TRACKING_DIR", str(tmp_path / "cache"))
    folder = resolve_model_uri("models:/shared-encoder/2", mlflow_server)
    assert (folder / "model.safetensors").exists() and (folder / "modules.json").exists()
    assert json.loads((folder / "registered_model.json").read_text())["version"] == "2"


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is missing (apt-get install chromium)")
def test_the_mlflow_web_ui_shows_the_run(mlflow_server, team_run):
    sync_api = pytest.importorskip("playwright.sync_api")
    _, manifest = team_run
    run_name = manifest["tags"]["mlflow.runName"]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        experiment = page.request.get(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name=team")
        experiment_id = experiment.json()["experiment"]["experiment_id"]
        page.goto(f"{mlflow_server}/#/experiments/{experiment_id}/runs/{manifest['run_id']}")
        page.get_by_text(run_name).first.wait_for(timeout=90_000)
        page.get_by_text("convssl.verb").first.wait_for(timeout=30_000)
        page.screenshot(path=str(SCREENSHOTS / "mlflow_run.png"))
        browser.close()
