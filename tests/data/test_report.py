"""report.json, report.md and the plots: present, readable, and showing the corpus."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from convssl.data.dialogue import Dialogue, Turn
from convssl.data.report import corpus_arrays, corpus_stats, removed_counts, render_markdown, write_report


def _dialogues() -> list[Dialogue]:
    out = []
    for i in range(40):
        turns = [Turn("u", "word " * (1 + (i * k) % 23), "user" if k % 2 == 0 else "agent") for k in range(2 + i % 9)]
        out.append(Dialogue(f"d{i}", turns, source="sgd" if i % 2 else "chat"))
    return out


def _report(dialogues: list[Dialogue]) -> dict:
    turns = sum(len(d.turns) for d in dialogues)
    return {
        "out_dir": "/tmp/x",
        "inputs": [{"path": "a.jsonl", "format": "jsonl", "dialogues": 47, "turns": 300, "intents": 0, "rejected": 3}],
        "counts": {"records_read": 50, "dialogues_read": 47, "intents_read": 0, "rejected": 3, "dialogues_kept": 40,
                   "turns_kept": turns, "intents_kept": 0},
        "rejects": {"malformed_json": 2, "bad_encoding": 1},
        "stages": [
            {"stage": "quality", "dialogues_in": 47, "dialogues_out": 42, "turns_in": 300, "turns_out": 290,
             "removed": {"too_few_turns": 5}, "seconds": 0.1},
            {"stage": "exact_dedup", "dialogues_in": 42, "dialogues_out": 40, "turns_in": 290, "turns_out": turns,
             "removed": {"exact_duplicate": 2}, "seconds": 0.01},
        ],
        "pii": {"EMAIL": 4},
        "splits": {"train": {"dialogues": 36, "turns": 200, "by_source": {"chat": 18, "sgd": 18}},
                   "test": {"dialogues": 4, "turns": 20, "by_source": {"chat": 2, "sgd": 2}}},
        "intents": {},
        "timings": {"read": 0.5, "total": 1.5},
    }


def test_removed_counts_name_stage_and_reason() -> None:
    assert removed_counts(_report(_dialogues())) == {
        "read: malformed_json": 2, "read: bad_encoding": 1, "quality: too_few_turns": 5,
        "exact_dedup: exact_duplicate": 2}


def test_corpus_stats_match_the_dialogues() -> None:
    dialogues = _dialogues()
    arrays = corpus_arrays(dialogues)
    stats = corpus_stats(arrays)
    assert stats["turns_per_dialogue"]["count"] == 40
    assert stats["turns_per_dialogue"]["max"] == max(len(d.turns) for d in dialogues)
    assert stats["turn_words"]["count"] == sum(len(d.turns) for d in dialogues)
    assert stats["roles"]["user"] + stats["roles"]["agent"] == stats["turn_words"]["count"]


def test_write_report_files_and_plots(tmp_path: Path) -> None:
    dialogues = _dialogues()
    report = _report(dialogues)
    arrays = corpus_arrays(dialogues)
    report["stats"] = corpus_stats(arrays)
    paths = write_report(report, tmp_path, arrays)
    on_disk = json.loads(paths["json"].read_text())
    assert on_disk["counts"]["dialogues_kept"] == 40
    assert sorted(on_disk["plots"]) == sorted(f"plots/{n}.png" for n in
                                              ("turn_lengths", "turns_per_dialogue", "roles", "removed"))
    for rel in on_disk["plots"]:
        png = tmp_path / rel
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 8000, rel  # axes, bars and labels, not a blank canvas
        pixels = imread(png)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 600
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 20, rel
    md = paths["markdown"].read_text()
    for needle in ("Read **50** records", "filters removed 7 dialogues; kept **40** dialogues", "| malformed_json | 2 |", "too_few_turns: 5", "| EMAIL | 4 |",
                   "| train | 36 | 200 |", "![removed](plots/removed.png)", "words per turn"):
        assert needle in md, needle


def test_markdown_without_removals_or_plots() -> None:
    report = _report(_dialogues())
    report["rejects"], report["pii"] = {}, {}
    for stage in report["stages"]:
        stage["removed"] = {}
    md = render_markdown(report)
    assert "None." in md and "None found." in md and "## Plots" not in md


@pytest.mark.parametrize("empty", [True, False])
def test_plots_survive_an_empty_corpus(tmp_path: Path, empty: bool) -> None:
    dialogues = [] if empty else _dialogues()[:1]
    report = _report(dialogues)
    write_report(report, tmp_path, corpus_arrays(dialogues))
    assert all((tmp_path / "plots" / f"{n}.png").stat().st_size > 2000
               for n in ("turn_lengths", "turns_per_dialogue", "roles", "removed"))


def test_histogram_bins_start_at_the_smallest_value_and_hold_whole_numbers() -> None:
    from convssl.data.report import histogram_bins

    # Turn counts after the quality gate (>= 2 turns), mostly even as in task-oriented logs.
    values = np.array([2] * 50 + [4] * 40 + list(range(2, 141, 2)) * 3 + [7, 9, 300])
    bins, top = histogram_bins(values)
    assert bins[0] == 1.5  # no bar reaches down to the 0 or 1 turns the filter removed
    width = bins[1] - bins[0]
    assert width == int(width) and (width == 1 or width % 2 == 0)  # each bar holds as many even values
    assert np.allclose(np.diff(bins), width) and len(bins) - 1 <= 80
    assert bins[-1] > top and top < 300  # the outlier is folded into the last bin
    counts, _ = np.histogram(np.minimum(values, top), bins=bins)
    assert counts.sum() == len(values)
    assert histogram_bins(np.array([5, 5, 5]))[0][0] == 4.5


def test_markdown_explains_each_removal_with_its_sources() -> None:
    report = _report(_dialogues())
    report["stages"][0]["removed_by_source"] = {"too_few_turns": {"chat": 4, "sgd": 1}}
    report["reasons"] = {"too_few_turns": "fewer than 2 turns (quality.min_turns)",
                         "malformed_json": "a JSONL line or JSON file that does not parse"}
    md = render_markdown(report)
    assert "## What was removed, and why" in md
    assert "| quality | too_few_turns | 5 | chat: 4, sgd: 1 | fewer than 2 turns (quality.min_turns) |" in md
    assert "| read | malformed_json | 2 | see rejects.jsonl | a JSONL line or JSON file that does not parse |" in md
    assert "| exact_dedup | exact_duplicate | 2 | - |" in md  # a stage without a source breakdown
