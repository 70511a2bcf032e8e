"""Write an evaluation as report.json (everything), report.md (tables) and plots/*.png.

The Markdown puts every model beside the baselines in one table per task, with k-shot results as
mean ± std over seeds and the wall-clock seconds of each row, so a reader sees the floor, the
spread and the cost next to every number.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from convssl.runs import write_json_atomic


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def _pct(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f}"


def _pm(metrics: dict[str, Any], key: str) -> str:
    if key not in metrics:
        return "–"
    std = metrics.get(f"{key}_std")
    return _pct(metrics[key]) if std is None else f"{_pct(metrics[key])} ± {100 * std:.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out + [""]


def _mode_order(mode: str) -> tuple[int, int, str]:
    if mode.startswith("kshot-"):
        return (3, int(mode.split("-")[1]), mode)
    order = {"probe": 0, "centroid": 2, "finetune": 4}
    return (order.get(mode, 1), 0, mode)


def render_markdown(result, seconds: float) -> str:
    rows = result.rows
    lines = ["# convssl evaluation report", ""]
    lines.append(f"Total wall-clock: {seconds:.1f} s. Accuracies and recalls in %; k-shot: mean ± std over "
                 f"{result.config.intent.seeds} seeds. `seconds` is the row's own time; embedding a task's texts is "
                 "counted once per model in `features s`.")
    lines.append("")
    lines.append("## Models and baselines")
    lines += _table(["name", "kind", "path"], [[r["name"], r["kind"], f"`{r['path']}`" if r["path"] else "–"]
                                               for r in result.representations])
    lines.append("## Tasks")
    lines += _table(["task", "data", "sizes"], [
        [name, f"`{info['path']}`", ", ".join(f"{k}={v}" for k, v in info.items() if k not in {"kind", "path"})]
        for name, info in result.tasks.items()
    ])
    by_task: dict[str, list] = defaultdict(list)
    for row in rows:
        by_task[row.task].append(row)
    for task, task_rows in by_task.items():
        kind = task_rows[0].task_kind
        lines.append(f"## {task}")
        lines.append("")
        lines += [f"**Warning:** {r.model}, {r.mode}: {r.warning}." for r in task_rows if r.warning]
        lines += [""] if any(r.warning for r in task_rows) else []
        lines += {"intent": _intent_section, "oos": _oos_section, "response": _response_section,
                  "ppl": _ppl_section}[kind](task_rows)
    return "\n".join(lines)


def _intent_section(rows: list) -> list[str]:
    models = list(dict.fromkeys(r.model for r in rows))
    modes = sorted({r.mode for r in rows}, key=_mode_order)
    cell = {(r.model, r.mode): r for r in rows}
    summary = [[m] + [_pm(cell[(m, mode)].metrics, "accuracy") if (m, mode) in cell else "–" for mode in modes]
               for m in models]
    out = ["Accuracy (%) by mode:", ""] + _table(["model"] + modes, summary)
    detail = []
    for r in sorted(rows, key=lambda r: (models.index(r.model), _mode_order(r.mode))):
        m = r.metrics
        detail.append([r.model, r.kind, r.mode, _pm(m, "accuracy"), _pm(m, "macro_f1"),
                       _pct(m.get("ece")), f"{r.seconds:.1f}", f"{m.get('features_seconds', 0):.1f}"])
    out += ["Details:", ""] + _table(["model", "kind", "mode", "accuracy", "macro-F1", "ECE", "seconds", "features s"],
                                     detail)
    for r in rows:
        if r.mode == "probe" and r.metrics.get("confusions"):
            pairs = "; ".join(f"{c['gold']} → {c['predicted']} ({c['count']})" for c in r.metrics["confusions"][:5])
            out.append(f"- top confusions of {r.model} (probe): {pairs}")
    return out + [""]


def _oos_section(rows: list) -> list[str]:
    body = []
    for r in rows:
        m = r.metrics
        body.append([r.model, r.kind, r.mode.removeprefix("oos-"), _pct(m["closed_set_accuracy"]),
                     _pct(m["in_scope_accuracy"]), _pct(m["oos_recall"]),
                     _pct(m["oos_precision"]), _pct(m["oos_f1"]), _pct(m["auroc"]), _pct(m["ece"]),
                     f"{r.seconds:.1f}"])
    return ["Threshold calibrated on validation (in-scope val + OOS val) only. `closed-set acc`: the probe on "
            "in-scope test texts with no rejection; `in-scope acc`: accepted and correct; ECE (15 bins) of the probe "
            "on in-scope test texts.", ""] + _table(
        ["model", "kind", "score", "closed-set acc", "in-scope acc", "OOS recall", "OOS precision", "OOS F1", "AUROC", "ECE", "seconds"],
        body)


def _response_section(rows: list) -> list[str]:
    body = [[r.model, r.kind, _pct(r.metrics["recall@1"]), _pct(r.metrics["recall@10"]), f"{r.metrics['mrr']:.3f}",
             r.metrics["candidates"], r.metrics["pairs"], f"{r.seconds:.1f}"] for r in rows]
    chance = rows[0].metrics.get("chance_recall@1", 0)
    return [f"Chance recall@1 = {_pct(chance)}%.", ""] + _table(
        ["model", "kind", "recall@1", "recall@10", "MRR", "candidates", "pairs", "seconds"], body)


def _ppl_section(rows: list) -> list[str]:
    body = []
    for r in rows:
        m = r.metrics
        ppl = f"{m['perplexity']:.2f}" if "perplexity" in m else "–"
        body.append([r.model, r.kind, ppl, m.get("tokens", "–"), f"{r.seconds:.1f}", r.note or ""])
    return _table(["model", "kind", "perplexity", "tokens", "seconds", "note"], body)


# ---- plots -------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_kshot(rows: list, task: str, path: Path) -> Path | None:
    curves: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    full: dict[str, float] = {}
    for r in rows:
        if r.mode.startswith("kshot-"):
            curves[r.model].append((r.metrics["k"], r.metrics["accuracy"], r.metrics["accuracy_std"]))
        elif r.mode == "probe":
            full[r.model] = r.metrics["accuracy"]
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, pts in curves.items():
        pts.sort()
        ks, acc, std = zip(*pts)
        line = ax.errorbar(ks, [100 * a for a in acc], yerr=[100 * s for s in std], marker="o", capsize=3, label=model)
        if model in full:
            ax.axhline(100 * full[model], ls="--", lw=0.8, color=line[0].get_color())
    ax.set_xscale("log")
    all_ks = sorted({k for pts in curves.values() for k, _, _ in pts})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    ax.minorticks_off()
    ax.set_xlabel("examples per class (k)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(f"{task}: k-shot linear probe (dashed: full train)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_confusions(rows: list, task: str, path: Path) -> Path | None:
    probe = next((r for r in rows if r.mode == "probe" and r.kind == "model" and r.metrics.get("confusions")), None)
    if probe is None:
        return None
    pairs = probe.metrics["confusions"][::-1]
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(pairs) + 1.5))
    ax.barh([f"{c['gold']} → {c['predicted']}" for c in pairs], [c["count"] for c in pairs], color="#c44e52")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("test errors")
    ax.set_title(f"{task}: most confused pairs\n({probe.model}, linear probe)", fontsize=9)
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_reliability(curves: dict[str, dict[str, list]], task: str, path: Path) -> Path | None:
    if not curves:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    for model, bins in curves.items():
        pts = [(c, a) for c, a, n in zip(bins["confidence"], bins["accuracy"], bins["count"]) if n > 0]
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, marker="o", label=model)
    ax.set_xlabel("confidence (max softmax of the probe)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"{task}: reliability diagram (15 bins)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_oos_hist(scores: dict[tuple, dict[str, Any]], task: str, path: Path) -> Path | None:
    items = [(k, v) for k, v in scores.items() if k[1] == task]
    if not items:
        return None
    models = list(dict.fromkeys(k[0] for k, _ in items))
    score_names = list(dict.fromkeys(k[2] for k, _ in items))
    plt = _plt()
    fig, axes = plt.subplots(len(models), len(score_names), figsize=(3.6 * len(score_names), 2.6 * len(models)),
                             squeeze=False)
    for (model, _, score), data in items:
        ax = axes[models.index(model)][score_names.index(score)]
        ax.hist(data["in_scope"], bins=40, alpha=0.6, density=True, label="in-scope")
        ax.hist(data["oos"], bins=40, alpha=0.6, density=True, label="OOS")
        ax.axvline(data["threshold"], color="black", ls="--", lw=1)
        ax.set_title(f"{model}\n{score}", fontsize=8)
        ax.tick_params(labelsize=7)
    for row in axes:
        for ax in row:
            if not ax.has_data():
                ax.axis("off")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(f"{task}: OOS scores on test (dashed: threshold from validation)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def write_plots(result, out_dir: Path) -> list[str]:
    plot_dir = out_dir / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path | None] = []
    by_task: dict[str, list] = defaultdict(list)
    for row in result.rows:
        by_task[row.task].append(row)
    for task, rows in by_task.items():
        stem = _safe(task)
        kind = rows[0].task_kind
        if kind == "intent":
            written.append(plot_kshot(rows, task, plot_dir / f"kshot_{stem}.png"))
            written.append(plot_confusions(rows, task, plot_dir / f"confusions_{stem}.png"))
            curves = {r.model: r.metrics["reliability"] for r in rows if r.mode == "probe" and "reliability" in r.metrics}
            written.append(plot_reliability(curves, task, plot_dir / f"reliability_{stem}.png"))
        elif kind == "oos":
            curves = {m: b for (m, t), b in result.plot_data.get("reliability", {}).items() if t == task}
            written.append(plot_reliability(curves, task, plot_dir / f"reliability_{stem}.png"))
            written.append(plot_oos_hist(result.plot_data.get("oos_scores", {}), task, plot_dir / f"oos_hist_{stem}.png"))
    return [str(p.relative_to(out_dir)) for p in written if p is not None]


def write_report(result, out_dir: Path, seconds: float = 0.0) -> dict[str, Any]:
    plots = write_plots(result, out_dir) if result.config.plots else []
    data = result.to_json()
    data["plots"] = plots
    data["seconds"] = round(seconds, 2)
    write_json_atomic(out_dir / "report.json", data)
    md = render_markdown(result, seconds)
    if plots:
        md += "\n## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n"
    (out_dir / "report.md").write_text(md, encoding="utf-8")
    return data
