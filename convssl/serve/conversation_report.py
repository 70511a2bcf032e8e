"""Scores and report of a conversation-test run: report.json for machines, report.md for people.

Per-turn accuracy (user turns with the right outcome), per-conversation accuracy (every user turn
right), escalations the test did not expect, accuracy per tag and per expected outcome, the
confusions (expected -> got), and every failing conversation as a transcript.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from convssl.serve.conversation_tests import OUTCOMES, ConversationResult, TurnResult


def _rate(right: int, total: int) -> float | None:
    return right / total if total else None


def summarize(results: Sequence[ConversationResult]) -> dict[str, Any]:
    turns = [t for r in results for t in r.checked]
    right = sum(bool(t.correct) for t in turns)
    passed = sum(r.passed for r in results)
    by_tag: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # turns right, turns, convs right, convs
    for r in results:
        for tag in r.tags or ["(untagged)"]:
            row = by_tag[tag]
            row[0] += sum(bool(t.correct) for t in r.checked)
            row[1] += len(r.checked)
            row[2] += r.passed
            row[3] += 1
    by_expected: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for t in turns:
        key = t.expected if t.expected in OUTCOMES else "intent answer"
        by_expected[key][0] += bool(t.correct)
        by_expected[key][1] += 1
    confusions = Counter((t.expected, t.got) for t in turns if not t.correct)
    unexpected = [r.name for r in results if any(t.unexpected_escalation for t in r.turns)]
    # intent turns the bot did not get wrong but asked about, offering the right intent
    clarified = sum(1 for t in turns if not t.correct and t.kind == "clarify" and t.expected in t.options)
    return {
        "conversations": len(results),
        "conversations_passed": passed,
        "conversation_accuracy": _rate(passed, len(results)),
        "turns": len(turns),
        "turns_right": right,
        "turn_accuracy": _rate(right, len(turns)),
        "unexpected_escalations": unexpected,
        "clarified_with_the_right_option": clarified,
        "by_tag": {tag: {"turn_accuracy": _rate(a, b), "turns": b, "conversation_accuracy": _rate(c, d),
                         "conversations": d} for tag, (a, b, c, d) in sorted(by_tag.items())},
        "by_expected": {k: {"accuracy": _rate(a, b), "turns": b} for k, (a, b) in sorted(by_expected.items())},
        "confusions": [{"expected": e, "got": g, "count": n} for (e, g), n in confusions.most_common()],
    }


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _first_guess(turn: TurnResult) -> str:
    """For a wrong turn the bot did not answer with an intent: what the classifier's first guess was."""
    if turn.correct or not turn.top or turn.got == turn.top[0][0]:
        return ""
    label, prob = turn.top[0]
    return f" (first guess {label} {prob:.2f})"


def transcript(result: ConversationResult) -> list[str]:
    lines = []
    for t in result.turns:
        if t.role == "agent":
            lines.append(f"  agent: {t.text}")
        elif t.role == "resolve":
            lines.append(f"  (resolved by the agent{': ' + t.text if t.text else ''})")
        else:
            mark = "ok " if t.correct else "XX "
            conf = f" {t.confidence:.2f}" if isinstance(t.confidence, float) else ""
            what = f"{t.got}{conf}" + (f" ({t.reason})" if t.reason else "") + (
                f" options {t.options}" if t.options else "") + _first_guess(t)
            lines.append(f"  user: {t.text}")
            lines.append(f"   bot: {t.reply}")
            lines.append(f"  {mark}expected {t.expected}, got {what}")
    return lines


def render_markdown(summary: dict[str, Any], results: Sequence[ConversationResult], meta: dict[str, Any]) -> str:
    out = ["# Conversation tests", ""]
    for key, value in meta.items():
        out.append(f"- {key}: `{value}`")
    out += [
        "",
        "| | right | total | accuracy |",
        "|---|---|---|---|",
        f"| turns | {summary['turns_right']} | {summary['turns']} | **{_pct(summary['turn_accuracy'])}** |",
        f"| conversations (every turn right) | {summary['conversations_passed']} | {summary['conversations']} | "
        f"**{_pct(summary['conversation_accuracy'])}** |",
        "",
        f"Escalations the tests did not expect: {len(summary['unexpected_escalations'])}"
        + (f" ({', '.join(summary['unexpected_escalations'])})" if summary["unexpected_escalations"] else ""),
        "",
        f"Wrong turns where the bot asked a clarifying question that offered the expected intent: "
        f"{summary['clarified_with_the_right_option']}",
        "",
        "## By tag",
        "",
        "| tag | turns | turn accuracy | conversations | conversation accuracy |",
        "|---|---|---|---|---|",
    ]
    for tag, row in summary["by_tag"].items():
        out.append(f"| {tag} | {row['turns']} | {_pct(row['turn_accuracy'])} | {row['conversations']} | "
                   f"{_pct(row['conversation_accuracy'])} |")
    out += ["", "## By expected outcome", "", "| expected | turns | accuracy |", "|---|---|---|"]
    for key, row in summary["by_expected"].items():
        out.append(f"| {key} | {row['turns']} | {_pct(row['accuracy'])} |")
    out += ["", "## Confusions (expected -> got)", ""]
    if summary["confusions"]:
        out += ["| expected | got | turns |", "|---|---|---|"]
        out += [f"| {c['expected']} | {c['got']} | {c['count']} |" for c in summary["confusions"]]
    else:
        out.append("None.")
    failing = [r for r in results if not r.passed]
    out += ["", f"## Failing conversations ({len(failing)})", ""]
    for r in failing:
        right = sum(bool(t.correct) for t in r.checked)
        tags = f" [{', '.join(r.tags)}]" if r.tags else ""
        out += [f"### {r.name}{tags}: {right}/{len(r.checked)} turns right", "", "```", *transcript(r), "```", ""]
    return "\n".join(out).rstrip() + "\n"


def write_report(out: str | Path, results: Sequence[ConversationResult], meta: dict[str, Any]) -> dict[str, Any]:
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    (folder / "report.json").write_text(json.dumps(
        {"meta": meta, "summary": summary, "conversations": [r.to_dict() for r in results]},
        indent=2, ensure_ascii=False), encoding="utf-8")
    (folder / "report.md").write_text(render_markdown(summary, results, meta), encoding="utf-8")
    return summary
