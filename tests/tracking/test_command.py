"""The run context around a command: metrics reach the store while the command still runs."""

from __future__ import annotations

import json
import time

from convssl.tracking.command import CommandRun
from convssl.tracking.settings import TrackingSettings


def _append(path, steps):
    with path.open("a", encoding="utf-8") as fh:
        for s in steps:
            fh.write(json.dumps({"step": s, "loss": 4.0 - s / 10, "tokens_per_s": 1000.0 + s, "elapsed": s}) + "\n")


def test_metrics_are_sent_while_the_command_runs_and_once_each(tracking_on, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    monkeypatch.setenv("CONVSSL_TRACKING_INTERVAL", "0.2")
    folder = tmp_path / "run"
    folder.mkdir()
    session = CommandRun("pretrain", ["pretrain", "--out", str(folder)], TrackingSettings(True, tracking_on, "live"),
                         str(folder)).start()
    _append(folder / "metrics.jsonl", [1, 2, 3])
    client = MlflowClient(tracking_on)
    deadline = time.time() + 120
    while True:  # the command has not finished: only the tracking thread can have sent these
        run_id = session.manifest.run_id
        if run_id and len(client.get_metric_history(run_id, "loss")) == 3:
            break
        assert time.time() < deadline, "no metrics reached the store while the command ran"
        time.sleep(0.2)
    _append(folder / "metrics.jsonl", [4, 5])
    session.finish("FINISHED")
    assert [m.step for m in client.get_metric_history(run_id, "tokens_per_s")] == [1, 2, 3, 4, 5]
    assert client.get_run(run_id).info.status == "FINISHED"
    assert json.loads((folder / "tracking.json").read_text())["metric_lines_sent"] == 5
