"""The prepare report: `report.json` for tools, `report.md` and PNG plots for people.

A curated corpus is only trustworthy if one can see what went in, what each filter removed and
why, and what the result looks like (turn lengths, dialogue lengths, who speaks), so every
prepare run leaves this record beside its outputs.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from convssl.data.dialogue import Dialogue
from convssl.runs import write_json_atomic

PLOT_NAMES = ("turn_lengths", "turns_per_dialogue", "roles", "removed")


def summarize(values: Sequence[int] | np.ndarray) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"count": 0, "mean": 0.0, "median": 0.0, "p95": 0.0, "max": 0.0}
    return {
        "count": int(arr.size),
        "mean": round(float(arr.mean()), 2),
        "median": float(np.median(arr)),
        "p95": float(np.percentile(arr, 95)),
        "max": float(arr.max()),
    }


def corpus_arrays(dialogues: Sequence[Dialogue]) -> dict[str, Any]:
    """Words per turn, turns per dialogue and turns per role of the kept corpus."""
    turn_words = np.fromiter((len(t.text.split()) for d in dialogues for t in d.turns), dtype=np.int32)
    turns_per = np.fromiter((len(d.turns) for d in dialogues), dtype=np.int32, count=len(dialogues))
    roles = Counter(t.role for d in dialogues for t in d.turns)
    return {"turn_words": turn_words, "turns_per_dialogue": turns_per, "roles": dict(roles)}


def corpus_stats(arrays: dict[str, Any]) -> dict[str, Any]:
    return {
        "turn_words": summarize(arrays["turn_words"]),
        "turns_per_dialogue": summarize(arrays["turns_per_dialogue"]),
        "roles": arrays["roles"],
    }


def removed_counts(report: dict[str, Any]) -> dict[str, int]:
    """Everything that did not reach the output, as `stage: reason` -> count."""
    out: dict[str, int] = {}
    for reason, n in report.get("rejects", {}).items():
        out[f"read: {reason}"] = int(n)
    for stage in report.get("stages", []):
        for reason, n in stage.get("removed", {}).items():
            out[f"{stage['stage']}: {reason}"] = int(n)
    return {k: v for k, v in out.items() if v}


# ------------------------------------------------------------------------------------------
# plots


def _figure(width: float = 7.0, height: float = 4.0) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def _bin_width(span: int, max_bins: int = 80) -> int:
    """1, or an even width: task dialogues have even turn counts, and an odd width of 3 or 5 would
    hold one or two even values in turn and draw a comb that is not in the data."""
    for width in (1, 2, 4, 10, 20, 50, 100, 200, 500, 1000):
        if span / width <= max_bins:
            return width
    width = -(-span // max_bins)
    return width + width % 2


def histogram_bins(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Bin edges for integer counts, and the 99th percentile where the last bin starts.

    Whole-number bins from the smallest value, so integer counts never pile up at an edge and no
    bar suggests values (0 turns, 0 words) that the filters removed.
    """
    low = int(values.min())
    top = max(low + 1, int(np.percentile(values, 99)))
    width = _bin_width(top - low + 1)
    return np.arange(low, top + width + 1, width) - 0.5, top


def _histogram(values: np.ndarray, title: str, xlabel: str, path: Path) -> Path:
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if values.size:
        bins, top = histogram_bins(values)
        clipped = np.minimum(values, top)
        width = bins[1] - bins[0]
        ax.set_xlim(bins[0] - width / 2, bins[-1] + width / 2)
        ax.hist(clipped, bins=bins, color="#4C72B0", edgecolor="white", linewidth=0.3)
        ax.axvline(float(np.median(values)), color="#C44E52", linestyle="--", label=f"median {np.median(values):g}")
        ax.legend()
        ax.set_title(f"{title} (n={values.size:,}; last bin = 99th percentile and above)")
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    return _save(fig, path)


def _bars(counts: dict[str, int], title: str, xlabel: str, path: Path, horizontal: bool = False) -> Path:
    fig = _figure(7.0, max(3.0, 0.35 * len(counts) + 1.5) if horizontal else 4.0)
    ax = fig.add_subplot(1, 1, 1)
    labels, values = list(counts), [counts[k] for k in counts]
    if not labels:
        ax.text(0.5, 0.5, "nothing removed", ha="center", va="center", transform=ax.transAxes)
    elif horizontal:
        pos = np.arange(len(labels))
        ax.barh(pos, values, color="#DD8452")
        ax.set_yticks(pos, labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_xlim(0, max(1, max(values)) * 1.15)  # room for the value labels
        for p, v in zip(pos, values):
            ax.text(v, p, f" {v:,}", va="center", fontsize=8)
    else:
        ax.bar(labels, values, color="#55A868")
        ax.set_ylabel(xlabel)
        ax.set_ylim(0, max(1, max(values)) * 1.18)  # room for the value labels
        total = sum(values) or 1
        for i, v in enumerate(values):
            ax.text(i, v, f"{v:,}\n({100 * v / total:.1f}%)", ha="center", va="bottom", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def write_plots(report: dict[str, Any], arrays: dict[str, Any], plots_dir: Path) -> list[Path]:
    plots_dir.mkdir(parents=True, exist_ok=True)
    return [
        _histogram(arrays["turn_words"], "Words per turn", "words", plots_dir / "turn_lengths.png"),
        _histogram(arrays["turns_per_dialogue"], "Turns per dialogue", "turns", plots_dir / "turns_per_dialogue.png"),
        _bars(dict(sorted(arrays["roles"].items())), "Speaker balance: turns per role (kept dialogues)", "turns", plots_dir / "roles.png"),
        _bars(removed_counts(report), "Records removed, by stage and reason", "records", plots_dir / "removed.png",
              horizontal=True),
    ]


# ------------------------------------------------------------------------------------------
# markdown


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) else f"{v:.3g}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _removed_section(report: dict[str, Any]) -> list[str]:
    """Every reason that removed something: how many, from which source, and what it means."""
    reasons = report.get("reasons", {})
    rows = []
    for reason, n in report.get("rejects", {}).items():
        rows.append(["read", reason, n, "see rejects.jsonl", reasons.get(reason, "")])
    for stage in report.get("stages", []):
        by_source = stage.get("removed_by_source", {})
        for reason, n in stage.get("removed", {}).items():
            sources = ", ".join(f"{k}: {v:,}" for k, v in by_source.get(reason, {}).items()) or "-"
            rows.append([stage["stage"], reason, n, sources, reasons.get(reason, "")])
    for reason, n in report.get("intents_removed", {}).items():
        rows.append(["intents", reason, n, "-", reasons.get(reason, "")])
    if not rows:
        return []
    lines = ["## What was removed, and why", "",
             "Malformed records are listed in `rejects.jsonl`; every dialogue a filter removed is in "
             "`filtered.jsonl` with its stage and reason. The thresholds are this run's (`config.yaml`).", ""]
    return lines + _table(["stage", "reason", "records", "by source", "meaning"], rows)


def render_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    out = [f"# Data preparation report: `{report.get('out_dir', '')}`", ""]
    out += [
        f"Read **{c['records_read']:,}** records ({c['dialogues_read']:,} dialogues, {c['intents_read']:,} intent "
        f"examples, {c['rejected']:,} rejected as malformed); filters removed "
        f"{c.get('dialogues_removed', c['dialogues_read'] - c['dialogues_kept']):,} dialogues; kept "
        f"**{c['dialogues_kept']:,}** dialogues ({c['turns_kept']:,} turns) and {c['intents_kept']:,} intent examples "
        f"in {report['timings'].get('total', 0):.1f} s.",
        "",
        "## Inputs",
        "",
    ]
    out += _table(["input", "format", "dialogues", "turns", "intents", "rejected"],
                  [[s["path"], s["format"], s.get("dialogues", 0), s.get("turns", 0), s.get("intents", 0),
                    s["rejected"]] for s in report["inputs"]])
    out += ["## Rejected at read time (details in `rejects.jsonl`)", ""]
    rejects = report.get("rejects", {})
    out += _table(["reason", "records"], sorted(rejects.items())) if rejects else ["None.", ""]
    out += ["## Curation stages", ""]
    out += _table(
        ["stage", "dialogues in", "dialogues out", "turns in", "turns out", "removed (reason: n)", "seconds"],
        [[s["stage"], s["dialogues_in"], s["dialogues_out"], s["turns_in"], s["turns_out"],
          ", ".join(f"{k}: {v:,}" for k, v in s.get("removed", {}).items()) or "-", s["seconds"]]
         for s in report["stages"]],
    )
    out += _removed_section(report)
    pii = report.get("pii", {})
    out += ["## PII replaced", ""]
    out += _table(["type", "occurrences"], sorted(pii.items())) if pii else ["None found.", ""]
    out += ["## Splits", ""]
    out += _table(["split", "dialogues", "turns", "by source"],
                  [[name, s["dialogues"], s["turns"], ", ".join(f"{k}: {v:,}" for k, v in s["by_source"].items())]
                   for name, s in report["splits"].items()])
    if report.get("intents"):
        out += ["## Intent sets", ""]
        out += _table(["split", "examples", "labels", "by source"],
                      [[name, s["examples"], s["labels"], ", ".join(f"{k}: {v:,}" for k, v in s["by_source"].items())]
                       for name, s in report["intents"].items()])
    stats = report.get("stats", {})
    if stats:
        out += ["## Corpus", ""]
        out += _table(["measure", "mean", "median", "p95", "max"],
                      [[name, s["mean"], s["median"], s["p95"], s["max"]]
                       for name, s in (("words per turn", stats["turn_words"]),
                                       ("turns per dialogue", stats["turns_per_dialogue"]))])
        out += _table(["role", "turns"], sorted(stats["roles"].items()))
    tok = report.get("tokenizer")
    if tok:
        out += ["## Tokenizer and shards", "",
                f"Tokenizer `{tok.get('path')}` ({tok.get('kind', '?')}, {tok.get('vocab_size', 0):,} tokens, "
                f"{'trained on the train split' if tok.get('trained') else 'reused'}).", ""]
        out += _table(["split", "dialogues", "turns", "tokens", "shards"],
                      [[name, s["dialogues"], s["turns"], s["tokens"], s["shards"]]
                       for name, s in report.get("shards", {}).items()])
    elif report.get("tokenizer_skipped"):
        out += ["## Tokenizer and shards", "", f"Not written: {report['tokenizer_skipped']}.", ""]
    out += ["## Timings (seconds)", ""]
    cpu = report.get("cpu_timings", {})
    out += _table(["stage", "wall", "CPU"], [[k, v, cpu.get(k, "-")] for k, v in report["timings"].items()])
    if report.get("plots"):
        out += ["## Plots", ""] + [f"![{Path(p).stem}](plots/{Path(p).name})" for p in report["plots"]] + [""]
    return "\n".join(out)


def write_report(report: dict[str, Any], out_dir: str | Path, arrays: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write plots (when corpus arrays are given), report.json and report.md into `out_dir`."""
    out = Path(out_dir)
    if arrays is not None:
        report["plots"] = [str(p.relative_to(out)) for p in write_plots(report, arrays, out / "plots")]
    write_json_atomic(out / "report.json", report)
    (out / "report.md").write_text(render_markdown(report), encoding="utf-8")
    return {"json": out / "report.json", "markdown": out / "report.md"}
