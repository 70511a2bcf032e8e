"""The model registry on MLflow: versions, aliases (`champion`, `challenger`), lineage, comparison.

A registered version is a plain Hugging Face folder (safetensors) stored as artifacts of the run
that trained it: `AutoModel` / `AutoTokenizer` open every version, and encoders also carry the
sentence-transformers files (modules.json, 1_Pooling/) so `SentenceTransformer(path)` opens them.
Each version gets a model card (README.md) with its data, objectives, metrics, baselines, intended
use, limitations and lineage.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convssl.tracking.command import run_tags
from convssl.tracking.fingerprint import fingerprint
from convssl.tracking.recorder import (
    MANIFEST,
    REGISTERED,
    Manifest,
    dataset_entry,
    experiment_id,
    find_run_reference,
    log_datasets,
    mlflow_client,
)
from convssl.tracking.references import ModelRef, ModelReferenceError, lookup_version

SKIPPED_FILES = {MANIFEST, REGISTERED, "optimizer.pt", "scheduler.pt", "rng.pt", "trainer_state.json"}
SKIPPED_SUFFIXES = {".log", ".tmp", ".bin", ".pt", ".pth", ".pkl", ".ckpt"}


class RegistryError(ValueError):
    """A registry request that cannot be done as asked: one clear line for the user."""


# --------------------------------------------------------------------------- model folders
def model_folder(path: str | Path) -> Path:
    """A model folder, or a pretraining run folder's `final/`."""
    folder = Path(path)
    if not (folder / "config.json").exists() and (folder / "final" / "config.json").exists():
        folder = folder / "final"
    if not (folder / "config.json").exists():
        raise RegistryError(f"{path} is not a model folder (no config.json): pass a `convssl pretrain` run "
                            "folder, its final/, or a `convssl finetune` classifier folder")
    if not list(folder.glob("*.safetensors")):
        raise RegistryError(f"{folder} has no .safetensors weights: the registry only takes safetensors "
                            "(pickled weights are refused)")
    return folder


def model_kind(folder: Path) -> str:
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    archs = " ".join(config.get("architectures") or [])
    if "ForSequenceClassification" in archs or (folder / "convssl_intent.json").exists():
        return "intent-classifier"
    if config.get("is_decoder") or "CausalLM" in archs or config.get("model_type") in ("gpt2", "llama"):
        return "decoder"
    return "encoder"


def write_sentence_transformers_files(folder: Path, max_length: int = 128) -> None:
    """modules.json + 1_Pooling: the layout `sentence_transformers.SentenceTransformer(path)` opens
    (mean pooling, as convssl's own evaluation embeds)."""
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": min(max_length, int(config.get("max_position_embeddings", max_length))),
                    "do_lower_case": False}, indent=2), encoding="utf-8")
    (folder / "1_Pooling").mkdir(exist_ok=True)
    pooling = {"word_embedding_dimension": int(config["hidden_size"]), "pooling_mode_cls_token": False,
               "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
               "pooling_mode_mean_sqrt_len_tokens": False, "include_prompt": True}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling, indent=2), encoding="utf-8")


def copy_model_files(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for path in sorted(src.iterdir()):
        if path.name in SKIPPED_FILES or path.suffix in SKIPPED_SUFFIXES or path.name.startswith("."):
            continue
        if path.is_dir():
            if path.name not in ("checkpoints", "tb", "plots"):
                shutil.copytree(path, dst / path.name)
        else:
            shutil.copy2(path, dst / path.name)


# --------------------------------------------------------------------------- model cards
@dataclass
class CardFacts:
    name: str
    kind: str
    run: Any = None  # mlflow Run that trained the model, when tracked
    chain: list[Any] = field(default_factory=list)  # parent runs, nearest first
    evaluations: list[Any] = field(default_factory=list)  # evaluate runs that scored this model


def _metric_table(metrics: dict[str, float], limit: int = 30) -> list[str]:
    if not metrics:
        return ["not recorded"]
    rows = ["| metric | value |", "|---|---|"]
    rows += [f"| {k} | {v:.4g} |" for k, v in sorted(metrics.items())[:limit]]
    return rows


def _datasets_of(run: Any) -> list[str]:
    found = []
    for item in getattr(run.inputs, "dataset_inputs", None) or []:
        context = next((t.value for t in item.tags if t.key == "mlflow.data.context"), "")
        found.append(f"{item.dataset.name} (fingerprint `{item.dataset.digest}`, {context})")
    return found


def render_card(facts: CardFacts, training_card: str | None) -> str:
    """The version's README.md: the training card the run wrote, then what the registry knows."""
    usage = ["```python", "from transformers import AutoModel, AutoTokenizer",
             "tokenizer = AutoTokenizer.from_pretrained(PATH)", "model = AutoModel.from_pretrained(PATH)"]
    if facts.kind == "encoder":
        usage += ["from sentence_transformers import SentenceTransformer",
                  "embeddings = SentenceTransformer(PATH).encode([\"my card was declined\"])"]
    if facts.kind == "intent-classifier":
        usage += ["from transformers import AutoModelForSequenceClassification",
                  "classifier = AutoModelForSequenceClassification.from_pretrained(PATH)  # labels in config.id2label"]
    usage.append("```")
    intended = {
        "encoder": "sentence and turn embeddings for dialogue: intent detection, retrieval, clustering; "
                   "a starting point for `convssl finetune`.",
        "decoder": "a dialogue language model to score or continue conversations; a starting point for fine-tuning.",
        "intent-classifier": "routing user messages of a support chatbot to intents (`convssl serve`), with an "
                             "out-of-scope threshold (convssl_intent.json) that hands unknown requests to agents.",
    }[facts.kind]
    what = {"encoder": "an encoder", "decoder": "a decoder", "intent-classifier": "an intent classifier"}[facts.kind]
    lines = [f"# {facts.name}", "", f"Registered with convssl: {what}.", "", "## Intended use", "",
             intended, "", "## Limitations", "",
             "- Trained on the data named below only: other domains, languages or registers may score far lower.",
             "- Metrics come from the held-out splits of that data; check them on your own traffic before serving.",
             "- Chat logs can carry personal data; convssl's curation scrubs common PII, not all of it.", ""]
    run = facts.run
    if run is not None:
        lines += ["## Data", "", *(f"- {d}" for d in _datasets_of(run) or ["not recorded"]), ""]
        objectives = {k: v for k, v in run.data.params.items() if k.startswith("objectives") or k in ("method", "model")}
        if objectives:
            lines += ["## Objectives and settings", "", *(f"- {k}: `{v}`" for k, v in sorted(objectives.items())), ""]
        lines += ["## Metrics", "", *_metric_table(run.data.metrics), ""]
    for ev in facts.evaluations:
        lines += [f"## Evaluation beside baselines (`{ev.data.tags.get('convssl.command', ev.info.run_id)}`)", "",
                  *_metric_table({k: v for k, v in ev.data.metrics.items() if k.startswith("eval.")}), ""]
    lines += ["## Lineage", ""]
    for step in ([run] if run is not None else []) + facts.chain:
        tags = step.data.tags
        lines.append(f"- {tags.get('convssl.verb', '?')} run `{step.info.run_id}`: `{tags.get('convssl.command', '?')}`"
                     + (f" at commit {tags['mlflow.source.git.commit'][:10]}" if "mlflow.source.git.commit" in tags else ""))
    if run is None:
        lines.append("- not tracked: registered from a folder without an MLflow run")
    lines += ["", "## Usage", "", *usage, ""]
    if training_card:
        lines += ["---", "", "# Training card", "", training_card.split("---", 2)[-1].strip(), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- lineage
def parent_chain(client: Any, run: Any, limit: int = 10) -> list[Any]:
    """The runs upstream of `run` (finetune -> pretrain -> prepare), nearest first."""
    from mlflow.exceptions import MlflowException

    chain, seen, todo = [], {run.info.run_id}, [run]
    while todo and len(chain) < limit:
        current = todo.pop(0)
        for parent_id in filter(None, current.data.tags.get("convssl.parent_runs", "").split(",")):
            if parent_id in seen:
                continue
            seen.add(parent_id)
            try:
                parent = client.get_run(parent_id)
            except MlflowException:
                continue
            chain.append(parent)
            todo.append(parent)
    return chain


def evaluations_of(client: Any, run_id: str) -> list[Any]:
    """Evaluate runs whose models came from this run (their parent_runs name it)."""
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        filter_string=f"tags.`convssl.verb` = 'evaluate' and tags.`convssl.parent_runs` LIKE '%{run_id}%'",
        max_results=5, order_by=["attributes.start_time DESC"])
    return list(runs)


# --------------------------------------------------------------------------- register
def _run_for_folder(client: Any, folder: Path) -> Any:
    """The run that trained `folder`, when this store has it."""
    from mlflow.exceptions import MlflowException

    ref = find_run_reference(folder)
    if not ref:
        return None
    try:
        return client.get_run(ref["run_id"])
    except MlflowException:
        return None


def _register_run(client: Any, folder: Path, name: str, experiment: str) -> Any:
    """An MLflow run for a folder that was trained without tracking: it carries the fingerprint."""
    argv = ["registry", "register", str(folder), "--name", name]
    manifest = Manifest("register", " ".join(["convssl", *argv]), client.tracking_uri, experiment,
                        int(time.time() * 1000), run_tags("register", argv))
    run = client.create_run(experiment_id(client, experiment), start_time=manifest.start_time, tags=manifest.tags,
                            run_name=manifest.tags["mlflow.runName"])
    log_datasets(client, run.info.run_id, [dataset_entry(str(folder), "model")])
    client.set_terminated(run.info.run_id)
    return client.get_run(run.info.run_id)


def register(path: str | Path, name: str, uri: str, aliases: list[str] | None = None,
             description: str | None = None, experiment: str = "convssl") -> Any:
    """Upload the model folder as artifacts of its run and create the next version of `name`."""
    from mlflow.exceptions import MlflowException

    folder = model_folder(path)
    client = mlflow_client(uri)
    run = _run_for_folder(client, folder) or _register_run(client, folder, name, experiment)
    kind = model_kind(folder)
    chain = parent_chain(client, run)
    # Evaluations of this model or of the encoder it was fine-tuned from: they carry the baselines.
    evaluations = [ev for r in [run, *chain[:1]] for ev in evaluations_of(client, r.info.run_id)][:3]
    facts = CardFacts(name, kind, run, chain, evaluations)
    training_card = (folder / "README.md").read_text(encoding="utf-8") if (folder / "README.md").exists() else None
    artifact_path = f"registered/{name}-{uuid.uuid4().hex[:8]}"  # unique: two registrations never share files
    with tempfile.TemporaryDirectory(prefix="convssl-register-") as tmp:
        export = Path(tmp) / "model"
        copy_model_files(folder, export)
        if kind == "encoder":
            write_sentence_transformers_files(export)
        (export / "README.md").write_text(render_card(facts, training_card), encoding="utf-8")
        client.log_artifacts(run.info.run_id, str(export), artifact_path=artifact_path)
    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if "RESOURCE_ALREADY_EXISTS" not in str(exc.error_code) and "already exists" not in str(exc):
            raise
    tags = {"convssl.kind": kind, "convssl.fingerprint": fingerprint(folder), "convssl.folder": str(folder.resolve())}
    version = client.create_model_version(name, source=f"{run.info.artifact_uri}/{artifact_path}",
                                          run_id=run.info.run_id, tags=tags, description=description)
    for alias in aliases or []:
        client.set_registered_model_alias(name, alias, version.version)
    return client.get_model_version(name, version.version)


# --------------------------------------------------------------------------- queries
def version_of(client: Any, name_or_ref: str) -> Any:
    """`NAME@ALIAS`, `NAME/VERSION`, `models:/...` or `NAME VERSION` joined by a slash."""
    text = name_or_ref if name_or_ref.startswith("models:/") else f"models:/{name_or_ref}"
    try:
        return lookup_version(client, ModelRef.parse(text))
    except ModelReferenceError as exc:
        raise RegistryError(str(exc)) from exc


def lineage(client: Any, name_or_ref: str) -> dict[str, Any]:
    """Data fingerprints, parent runs and the commands to reproduce a registered version."""
    version = version_of(client, name_or_ref)
    run = client.get_run(version.run_id) if version.run_id else None
    chain = ([run] if run is not None else []) + (parent_chain(client, run) if run is not None else [])
    steps = []
    for step in reversed(chain):  # oldest first: data -> pretrain -> finetune
        tags = step.data.tags
        steps.append({
            "run_id": step.info.run_id,
            "verb": tags.get("convssl.verb"),
            "command": tags.get("convssl.command"),
            "cwd": tags.get("convssl.cwd"),
            "commit": tags.get("mlflow.source.git.commit"),
            "status": step.info.status,
            "data": [{"name": d.dataset.name, "digest": d.dataset.digest,
                      "context": next((t.value for t in d.tags if t.key == "mlflow.data.context"), "")}
                     for d in (step.inputs.dataset_inputs or [])],
        })
    aliases = sorted(version.aliases or [])
    return {"name": version.name, "version": str(version.version), "aliases": aliases, "run_id": version.run_id,
            "fingerprint": (version.tags or {}).get("convssl.fingerprint"), "source": version.source, "steps": steps}


def compare(client: Any, name: str, first: str, second: str) -> tuple[list[Any], list[tuple[str, list[float | None]]]]:
    """The two versions and their runs' final metrics side by side (evaluation runs of each included)."""
    versions = [version_of(client, f"{name}@{v}" if not v.isdigit() else f"{name}/{v}") for v in (first, second)]
    metric_sets = []
    for version in versions:
        metrics: dict[str, float] = {}
        if version.run_id:
            metrics.update(client.get_run(version.run_id).data.metrics)
            for ev in evaluations_of(client, version.run_id)[:1]:
                metrics.update({k: v for k, v in ev.data.metrics.items() if k.startswith("eval.")})
        metric_sets.append(metrics)
    keys = sorted(set().union(*metric_sets))
    return versions, [(k, [m.get(k) for m in metric_sets]) for k in keys]
