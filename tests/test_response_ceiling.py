"""scripts/response_ceiling.py: how high recall@1 can go when candidates repeat the true reply's meaning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from convssl.cli import main
from tests.evaluate import slices

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import response_ceiling  # noqa: E402  (a script beside results.py, not a package module)

REPO = Path(__file__).resolve().parents[1]
tiny_bert, sgd_slice = slices.tiny_bert, slices.sgd_slice


def _turn(*acts: tuple[str, str, list[str]]) -> dict:
    return {"frames": [{"actions": [{"act": a, "slot": s, "values": v} for a, s, v in acts]}]}


def test_a_reply_with_the_same_acts_and_values_is_a_twin_and_halves_the_chance():
    offer = response_ceiling.act_signature(_turn(("OFFER", "time", ["6 pm"]), ("INFORM", "price", ["$45"])))
    reordered = response_ceiling.act_signature(_turn(("INFORM", "price", ["$45"]), ("OFFER", "time", ["6 PM"])))
    later = response_ceiling.act_signature(_turn(("OFFER", "time", ["7 pm"]), ("INFORM", "price", ["$45"])))
    assert offer == reordered  # act order and value case do not make another meaning
    assert offer != later
    assert response_ceiling.act_signature(_turn(("OFFER", "time", ["7 pm"])), values=False) == \
        response_ceiling.act_signature(_turn(("OFFER", "time", ["6 pm"])), values=False)
    bye = response_ceiling.act_signature(_turn(("GOODBYE", "", [])))
    # batches of 4 as recall_at_k cuts them; the short tail batch (one pair) is dropped
    found = response_ceiling.ceiling([offer, reordered, later, bye, bye], candidates=4)
    assert found == {"ceiling_recall@1": (0.5 + 0.5 + 1 + 1) / 4, "share_with_twin": 0.5, "pairs": 4, "candidates": 4}


def test_wording_among_twins_counts_exact_picks_only_where_the_pick_is_right_in_meaning():
    import numpy as np

    a, b = (("INFORM", "x", ("1",)),), (("GOODBYE", "", ()),)
    signatures = [a, a, b, b]  # two pairs of twins
    sims = np.array([[0.9, 0.1, 0.0, 0.0],   # the true reply itself
                     [0.1, 0.2, 0.9, 0.0],   # wrong in meaning: not counted
                     [0.0, 0.0, 0.1, 0.9],   # right in meaning, its twin
                     [0.0, 0.0, 0.1, 0.9]])  # the true reply itself
    found = response_ceiling.wording_among_twins([sims], signatures)
    assert found == {"pairs": 3, "exact_reply": 2 / 3, "chance": 0.5}
    assert response_ceiling.first_pick_agreement([sims], signatures) == 0.75


def test_the_script_scores_the_evaluations_own_pairs(tiny_bert, sgd_slice, tmp_path):
    out = tmp_path / "ceiling.json"
    subprocess.run([sys.executable, str(REPO / "scripts" / "response_ceiling.py"), "--task", str(sgd_slice),
                    "--sgd", str(sgd_slice), "--model", str(tiny_bert), "--max-pairs", "300", "--candidates", "50",
                    "--out", str(out)], check=True, cwd=REPO, timeout=300)
    found = json.loads(out.read_text(encoding="utf-8"))
    values, slots = found["by_acts_and_values"], found["by_acts_and_slots"]
    assert values["pairs"] == 300 and values["candidates"] == 50
    # SGD repeats its replies' meanings ("Anything else?"): twins exist, and fewer when values count
    assert 0 < values["share_with_twin"] <= slots["share_with_twin"] < 1
    assert slots["ceiling_recall@1"] <= values["ceiling_recall@1"] < 1
    # the model's recall@1 is the one `convssl evaluate` reports on the same task and settings
    assert main(["evaluate", "--model", str(tiny_bert), "--task", f"response:{sgd_slice}", "--no-random-baseline",
                 "--no-tfidf", "--no-tracking", "--no-plots", "--out", str(tmp_path / "eval"),
                 "response.max_pairs=300", "response.candidates=50"]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text(encoding="utf-8"))
    evaluated = next(r for r in report["rows"] if r["task_kind"] == "response")["metrics"]["recall@1"]
    assert abs(found["model"]["recall@1"] - evaluated) < 1e-9
    assert found["model"]["first_pick_same_acts_and_values"] >= found["model"]["recall@1"] - 1e-9
    twins = found["model"]["right_in_meaning_with_twins"]
    assert twins["pairs"] == 0 or 0 < twins["chance"] <= 0.5


def test_dialogues_without_their_acts_are_refused_by_name(sgd_slice, shared_data, tmp_path):
    other = tmp_path / "dialogues_030.json"
    other.write_text(json.dumps(json.loads((shared_data / "sgd" / "train" / "dialogues_030.json").read_text())[:3]))
    run = subprocess.run([sys.executable, str(REPO / "scripts" / "response_ceiling.py"), "--task", str(other),
                          "--sgd", str(sgd_slice)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "not among the --sgd files" in run.stderr and "act annotations" in run.stderr
