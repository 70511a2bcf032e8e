"""A dead tracking server never costs a run: it completes, the user is told once, `tracking sync` sends it later.
And `tracking=false` records nothing at all."""

from __future__ import annotations

import json
import time

from convssl.cli import main
from tests._server import free_port


def write_chats(folder, n=12):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "chats.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in range(n):
            turns = [{"speaker": "customer", "text": f"My card number {i} was declined at the shop today."},
                     {"speaker": "agent", "text": f"Sorry to hear that, let me check order {i} for you now."}]
            fh.write(json.dumps({"id": f"c{i}", "turns": turns}) + "\n")
    return path


def test_unreachable_server_keeps_the_run_and_sync_sends_it(tracking_on, tmp_path, capsys):
    from mlflow import MlflowClient

    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    out = tmp_path / "prepared"
    started = time.time()
    rc = main(["prepare", str(write_chats(tmp_path / "in")), "--out", str(out), "--no-tokenize", "--no-progress",
               "--tracking-uri", dead])
    elapsed = time.time() - started
    err = capsys.readouterr().err
    assert rc == 0 and (out / "dialogues" / "train.jsonl").exists()
    warnings = [line for line in err.splitlines() if "warning" in line.lower()]
    assert len(warnings) == 1 and "unreachable" in warnings[0] and f"convssl tracking sync {out}" in warnings[0]
    assert elapsed < 60, f"the dead server held the command for {elapsed:.0f} s"
    manifest = json.loads((out / "tracking.json").read_text())
    assert manifest["synced"] is False and manifest["status"] == "FINISHED"

    # The server is still down: sync says so and keeps the run for later.
    assert main(["tracking", "sync", str(out)]) == 1
    assert "not sent" in capsys.readouterr().out
    # Sent to a store that answers (the team server is back, or another store): the run with its data.
    assert main(["tracking", "sync", str(out), "--tracking-uri", tracking_on]) == 0
    assert "recorded as MLflow run" in capsys.readouterr().out
    run = MlflowClient(tracking_on).get_run(json.loads((out / "tracking.json").read_text())["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["convssl.verb"] == "prepare"
    assert run.data.params["inputs.format"] == "None" and run.data.metrics["counts.dialogues_kept"] > 0
    contexts = {i.dataset.name: i.tags[0].value for i in run.inputs.dataset_inputs}
    assert contexts == {"chats.jsonl": "source", "prepared": "output"}
    assert main(["tracking", "sync", str(out)]) == 0 and "already recorded" in capsys.readouterr().out


def test_tracking_false_records_nothing(tracking_on, tmp_path, capsys):
    from mlflow import MlflowClient

    before = len(MlflowClient(tracking_on).search_runs(["0"] + [e.experiment_id for e in MlflowClient(tracking_on).search_experiments()]))
    out = tmp_path / "prepared"
    assert main(["prepare", str(write_chats(tmp_path / "in")), "--out", str(out), "--no-tokenize", "--no-progress",
                 "tracking=false"]) == 0
    assert not (out / "tracking.json").exists()
    client = MlflowClient(tracking_on)
    assert len(client.search_runs(["0"] + [e.experiment_id for e in client.search_experiments()])) == before
