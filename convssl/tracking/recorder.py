"""Record a command's run folder in MLflow: params, metrics over steps, final metrics, inputs, artifacts.

Everything here reads files the verb wrote, so the same functions serve the end of a command, the
live tail of a pretraining run's metrics.jsonl and `convssl tracking sync` after an outage.
`RUN/tracking.json` (the manifest) says which MLflow run a folder belongs to and how much of it
was sent, so a replay never logs a metric twice.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convssl.runs import write_json_atomic
from convssl.tracking.fingerprint import describe, fingerprint
from convssl.tracking.settings import (
    ensure_local_store,
    local_artifact_root,
    quiet_network_defaults,
    silence_mlflow_logs,
)

MANIFEST = "tracking.json"
REGISTERED = "registered_model.json"
# Small files a colleague wants to open from the MLflow UI; model weights go to the registry only.
ARTIFACT_FILES = ("config.yaml", "report.md", "report.json", "metrics.jsonl", "metrics.json", "summary.json",
                  "training.json", "README.md", "loss.png", "rejects.jsonl", "convssl_intent.json")
ARTIFACT_GLOBS = ("*.log", "plots/*.png", "*.png", "final/README.md")  # final/README.md: the model card
MAX_ARTIFACT_BYTES = 20 << 20
MAX_FINAL_METRICS = 400
_BAD_KEY = re.compile(r"[^\w\-. /]")


@dataclass
class Manifest:
    """What `RUN/tracking.json` holds: enough to find the run again or replay it elsewhere."""

    verb: str
    command: str
    tracking_uri: str
    experiment: str
    start_time: int
    tags: dict[str, str] = field(default_factory=dict)
    run_id: str | None = None
    end_time: int | None = None
    status: str = "RUNNING"  # the command's outcome: RUNNING, FINISHED, FAILED, KILLED
    synced: bool = False  # everything below was sent to the store
    metric_lines_sent: int = 0
    parents: list[str] = field(default_factory=list)
    error: str | None = None

    def save(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST, asdict(self))

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})


def mlflow_client(uri: str) -> Any:
    """An MlflowClient for tracking and registry at `uri`; the local SQLite folder is created on first use."""
    quiet_network_defaults()
    silence_mlflow_logs()
    ensure_local_store(uri)
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def experiment_id(client: Any, name: str) -> str:
    """The experiment's id, created on first use (two processes creating it at once both succeed)."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = local_artifact_root(client.tracking_uri)
    try:
        return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    except MlflowException:
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def start_run(client: Any, manifest: Manifest) -> str:
    run = client.create_run(experiment_id(client, manifest.experiment), start_time=manifest.start_time,
                            tags=manifest.tags, run_name=manifest.tags.get("mlflow.runName"))
    return run.info.run_id


# --------------------------------------------------------------------------- reading run folders
def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (`model.hidden_size`), lists kept as values."""
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    out[prefix[:-1]] = data
    return out


def metric_key(key: str) -> str:
    return _BAD_KEY.sub("_", key)[:250]


def numeric_leaves(data: Any, prefix: str) -> dict[str, float]:
    """The finite numbers in a JSON report, keyed by their path (`test.accuracy`)."""
    out: dict[str, float] = {}
    for key, value in flatten(data, prefix).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        out[metric_key(key)] = float(value)
    return out


def config_params(folder: Path) -> dict[str, str]:
    params = {}
    for key, value in flatten(_read_yaml(folder / "config.yaml")).items():
        text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
        params[key[:250]] = text[:6000]
    return params


def step_metrics(folder: Path, skip_lines: int, start_ms: int | None = None) -> tuple[list[tuple[str, float, int, int]], int]:
    """(key, value, timestamp ms, step) for each number in metrics.jsonl after `skip_lines` lines.

    A record's time is the run's start plus its `elapsed` seconds when it has them, so a replay
    after an outage draws the same curves over wall-clock time as a live run."""
    path = folder / "metrics.jsonl"
    if not path.exists():
        return [], skip_lines
    rows: list[tuple[str, float, int, int]] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    complete = len(lines) if path.read_bytes().endswith(b"\n") else len(lines) - 1  # a line being written
    now = int(time.time() * 1000)
    for line in lines[skip_lines:complete]:
        try:
            record = json.loads(line)
        except ValueError:
            continue
        step = int(record.get("step", 0))
        elapsed = record.get("elapsed")
        stamp = start_ms + int(elapsed * 1000) if start_ms and isinstance(elapsed, (int, float)) else now
        for key, value in record.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if math.isfinite(value):
                rows.append((metric_key(key), float(value), stamp, step))
    return rows, max(complete, skip_lines)


def epoch_metrics(folder: Path, start_ms: int) -> list[tuple[str, float, int, int]]:
    """Fine-tuning's per-epoch history (training.json: loss, validation accuracy) as curves over epochs."""
    training = _read_json(folder / "training.json")
    history = training.get("history") if isinstance(training, dict) else None
    rows: list[tuple[str, float, int, int]] = []
    for record in history if isinstance(history, list) else []:
        if not isinstance(record, dict) or not isinstance(record.get("epoch"), int):
            continue
        for key, value in numeric_leaves({k: v for k, v in record.items() if k != "epoch"}, "epoch.").items():
            rows.append((key, value, start_ms, record["epoch"]))
    return rows


def final_metrics(folder: Path, verb: str) -> dict[str, float]:
    """The numbers a user compares: pretraining summary, fine-tuning scores, evaluation and prepare reports."""
    metrics: dict[str, float] = {}
    summary = _read_json(folder / "summary.json")
    if isinstance(summary, dict):
        metrics.update(numeric_leaves({k: summary.get(k) for k in ("steps", "tokens_seen", "elapsed_s")}, ""))
        metrics.update(numeric_leaves(summary.get("last_eval") or {}, "final."))
        best = summary.get("best") or {}
        if isinstance(best.get("value"), (int, float)):
            metrics[metric_key(f"best.{best.get('metric', 'value')}")] = float(best["value"])
    scores = _read_json(folder / "metrics.json")
    if isinstance(scores, dict):
        metrics.update(numeric_leaves({k: scores.get(k) for k in ("validation", "test", "threshold", "seconds")}, ""))
    report = _read_json(folder / "report.json")
    if isinstance(report, dict) and verb == "prepare":
        metrics.update(numeric_leaves(report.get("counts") or {}, "counts."))
    elif isinstance(report, dict):
        metrics.update(evaluation_metrics(report))
    return dict(list(metrics.items())[:MAX_FINAL_METRICS])


def evaluation_metrics(report: dict[str, Any]) -> dict[str, float]:
    """`convssl evaluate` scores as `eval.TASK.MODE.MODEL.METRIC`: the model and its baselines
    (TF-IDF, random init) side by side, e.g. eval.intent_banking.probe.tfidf_logreg.accuracy."""
    out: dict[str, float] = {}
    for row in report.get("rows") or []:
        if not isinstance(row, dict):
            continue
        where = ".".join(re.sub(r"[^\w\-]+", "_", str(row.get(k) or "-")) for k in ("task", "mode", "model"))
        for name, value in (row.get("metrics") or {}).items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[metric_key(f"eval.{where}.{name}")] = float(value)
    return out


# --------------------------------------------------------------------------- inputs and lineage
def _as_list(value: Any) -> list[str]:
    if not value:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def input_paths(verb: str, config: dict[str, Any]) -> list[tuple[str, str]]:
    """(path, context) of every data input named in a verb's resolved config."""
    if verb == "prepare":
        paths = _as_list((config.get("inputs") or {}).get("paths")) or ["chitchat"]
        return [(p, "source") for p in paths]
    if verb == "pretrain":
        return [(p, "training") for p in _as_list(config.get("data"))]
    if verb == "finetune":
        return [(p, "training") for p in _as_list(config.get("data"))] + \
               [(p, "validation") for p in _as_list(config.get("validation"))]
    if verb == "evaluate":
        return [(t.split(":", 1)[-1], "evaluation") for t in _as_list(config.get("tasks"))]
    return []


def model_paths(verb: str, config: dict[str, Any]) -> list[str]:
    """Models a verb starts from or scores: their runs are this run's parents."""
    if verb == "pretrain":  # continued pretraining (model.init_from) descends from that model's run
        return _as_list((config.get("model") or {}).get("init_from"))
    if verb == "finetune":
        return _as_list(config.get("model"))
    if verb == "evaluate":
        return _as_list(config.get("models")) + _as_list(config.get("baselines"))
    return []


def find_run_reference(path: str | Path) -> dict[str, Any] | None:
    """The MLflow run that produced a folder: its manifest, or a registered version's record,
    in the folder or up to two levels above (`RUN/final/` belongs to `RUN`)."""
    folder = Path(path)
    for candidate in (folder, folder.parent, folder.parent.parent):
        for name in (REGISTERED, MANIFEST):
            data = _read_json(candidate / name)
            if isinstance(data, dict) and data.get("run_id"):
                return data
    return None


def dataset_entry(path: str, context: str) -> dict[str, Any]:
    """Name, digest and size of one input; `chitchat` is the corpus inside its pip package."""
    target = Path(path)
    if not target.exists() and path == "chitchat":
        from importlib.metadata import PackageNotFoundError, version

        try:
            ver = version("chitchat-dataset")
        except PackageNotFoundError:
            ver = "unknown"
        return {"name": "chitchat", "source": f"pypi:chitchat-dataset=={ver}", "digest": f"chitchat-{ver}"[:36],
                "context": context, "profile": {}}
    if not target.exists():
        return {"name": target.name or path, "source": path, "digest": "missing", "context": context, "profile": {}}
    return {"name": target.resolve().name, "source": str(target.resolve()), "digest": fingerprint(target),
            "context": context, "profile": describe(target)}


def log_datasets(client: Any, run_id: str, entries: list[dict[str, Any]]) -> None:
    from mlflow.entities import Dataset, DatasetInput, InputTag

    inputs = []
    for entry in entries:
        entity = Dataset(name=entry["name"], digest=entry["digest"], source_type="local",
                         source=json.dumps({"uri": entry["source"]}),
                         profile=json.dumps(entry["profile"]) if entry["profile"] else None)
        inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", entry["context"])]))
    if inputs:
        client.log_inputs(run_id, datasets=inputs)


def lineage_tags(verb: str, config: dict[str, Any], folder: Path) -> tuple[dict[str, str], list[dict[str, Any]]]:
    """Tags naming the parent runs (the data's prepare run, the base model's run) and the inputs."""
    entries = [dataset_entry(p, c) for p, c in input_paths(verb, config)]
    if verb == "prepare" and folder.exists():
        entries.append(dataset_entry(str(folder), "output"))
    parents = []
    for path in [e["source"] for e in entries if e["context"] != "output"] + model_paths(verb, config):
        ref = find_run_reference(path)
        if ref and ref["run_id"] not in parents:
            parents.append(ref["run_id"])
    tags = {"convssl.data_fingerprints": ",".join(f"{e['name']}={e['digest']}" for e in entries)[:5000]}
    if parents:
        tags["convssl.parent_runs"] = ",".join(parents)
    models = model_paths(verb, config)
    if models:
        tags["convssl.models"] = ",".join(models)[:5000]
    return tags, entries


# --------------------------------------------------------------------------- sending
def send_metrics(client: Any, run_id: str, rows: list[tuple[str, float, int, int]]) -> None:
    from mlflow.entities import Metric

    batch = [Metric(key, value, stamp, step) for key, value, stamp, step in rows]
    for start in range(0, len(batch), 1000):  # MLflow's limit per log_batch call
        client.log_batch(run_id, metrics=batch[start:start + 1000], synchronous=True)


def send_params(client: Any, run_id: str, params: dict[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100], synchronous=True)


def artifact_files(folder: Path) -> list[Path]:
    found: dict[Path, None] = {}
    for name in ARTIFACT_FILES:
        if (folder / name).is_file():
            found[folder / name] = None
    for pattern in ARTIFACT_GLOBS:
        for path in sorted(folder.glob(pattern)):
            found[path] = None
    return [p for p in found if p.stat().st_size <= MAX_ARTIFACT_BYTES]


def send_artifacts(client: Any, run_id: str, folder: Path) -> None:
    for path in artifact_files(folder):
        rel = path.relative_to(folder).parent.as_posix()
        client.log_artifact(run_id, str(path), artifact_path=None if rel == "." else rel)


def record_folder(client: Any, manifest: Manifest, folder: Path | None) -> None:
    """Send what the finished command left in `folder` to `manifest.run_id`, then close the run."""
    run_id = manifest.run_id
    assert run_id is not None
    if folder is not None and folder.exists():
        config = _read_yaml(folder / "config.yaml")
        send_params(client, run_id, config_params(folder))
        rows, sent = step_metrics(folder, manifest.metric_lines_sent, manifest.start_time)
        send_metrics(client, run_id, rows + epoch_metrics(folder, manifest.start_time))
        manifest.metric_lines_sent = sent
        stamp = (manifest.end_time or int(time.time() * 1000))
        last_step = max((r[3] for r in rows), default=0)
        send_metrics(client, run_id, [(k, v, stamp, last_step) for k, v in final_metrics(folder, manifest.verb).items()])
        tags, entries = lineage_tags(manifest.verb, config, folder)
        for key, value in tags.items():
            client.set_tag(run_id, key, value)
        manifest.parents = [p for p in tags.get("convssl.parent_runs", "").split(",") if p]
        log_datasets(client, run_id, entries)
        send_artifacts(client, run_id, folder)
    client.set_terminated(run_id, status=manifest.status, end_time=manifest.end_time)
    manifest.synced = True


def sync_folder(folder: Path, uri: str | None = None) -> Manifest:
    """Send a run folder whose tracking was kept locally (store unreachable) to `uri` or its own store.

    The run is continued when the store already has it (the metrics sent live are not sent twice);
    otherwise it is created with the original start time, tags and command.
    """
    from mlflow.exceptions import MlflowException

    manifest = Manifest.load(folder)
    target = uri or manifest.tracking_uri
    client = mlflow_client(target)
    known = False
    if manifest.run_id and target == manifest.tracking_uri:
        try:
            known = client.get_run(manifest.run_id) is not None
        except MlflowException:
            known = False
    if not known:
        manifest.run_id = start_run(client, manifest)
        manifest.metric_lines_sent = 0
    manifest.tracking_uri = target
    record_folder(client, manifest, folder)
    manifest.error = None
    manifest.save(folder)
    return manifest
