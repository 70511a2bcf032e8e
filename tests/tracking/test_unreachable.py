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


def _runs(uri):
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()], max_results=1000)


def test_bad_input_fails_at_once_and_records_nothing(tracking_on, tmp_path, capsys):
    import threading

    before = {r.info.run_id for r in _runs(tracking_on)}
    started = time.time()
    assert main(["finetune", "--model", str(tmp_path / "no-model"), "--data", str(tmp_path), "--out",
                 str(tmp_path / "intent")]) == 2
    assert time.time() - started < 10  # the error does not wait for mlflow to load
    assert "no-model" in capsys.readouterr().err
    for thread in [t for t in threading.enumerate() if t.name == "convssl-tracking"]:
        thread.join(timeout=120)
    assert {r.info.run_id for r in _runs(tracking_on)} == before


def test_sync_continues_a_run_cut_off_mid_way_without_sending_a_step_twice(tracking_on, tmp_path):
    from mlflow import MlflowClient

    from convssl.tracking.recorder import Manifest, mlflow_client, send_metrics, start_run, step_metrics

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "loss": 5.0 - s / 10, "elapsed": s * 0.5}) + "\n" for s in range(1, 7)))
    manifest = Manifest("pretrain", "convssl pretrain --out run", tracking_on, "convssl", int(time.time() * 1000),
                        {"convssl.verb": "pretrain"})
    client = mlflow_client(tracking_on)
    manifest.run_id = start_run(client, manifest)
    # The live tail had sent three steps when the store went away; the command then finished.
    rows, _ = step_metrics(folder, 0, manifest.start_time)
    send_metrics(client, manifest.run_id, [r for r in rows if r[3] <= 3])
    manifest.metric_lines_sent, manifest.status = 3, "FINISHED"
    manifest.save(folder)

    assert main(["tracking", "sync", str(folder)]) == 0
    history = MlflowClient(tracking_on).get_metric_history(manifest.run_id, "loss")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    assert MlflowClient(tracking_on).get_run(manifest.run_id).info.status == "FINISHED"
