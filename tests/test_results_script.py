"""scripts/results.py end to end on its --quick settings (slow: 20-30 minutes on 2 cores, more on a
CPU without AMX, where bf16 matmuls are slower than fp32; hence its own time limit above the suite's 600 s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_quick_results_sequence_writes_every_row_and_the_targets(tmp_path, shared_data):
    out, doc = tmp_path / "results", tmp_path / "results.md"
    subprocess.run([sys.executable, str(REPO / "scripts" / "results.py"), "--quick", "--out", str(out),
                    "--doc", str(doc)], check=True, cwd=REPO, timeout=3600)
    text = doc.read_text(encoding="utf-8")
    intent_tables = text.split("## Response selection")[0]  # the response table has its own MiniLM row
    for row in ("TF-IDF + logistic regression", "`mini`, randomly initialised (no SSL)",
                "`mini` pretrained by convssl (chitchat + SGD)", "MiniLM (all-MiniLM-L6-v2) as shipped"):
        assert intent_tables.count(f"| {row} |") == 2, row  # one row in each table
    assert text.count("| MiniLM + convssl domain-adaptive SSL |") == 1  # measured frozen only
    assert "## Targets" in text and "Quick run" in text
    assert "## Response selection" in text and "| MiniLM + convssl response selection" in text
    assert "| TF-IDF |" in text and "Target recall@1 >= 70 on held-out dialogue files" in text
    assert "| response selection recall@1 of 100 on held-out dialogue files >= 70 |" in text  # the targets table
    assert "A model that reads meaning perfectly" in text  # the ceiling of the held-out pairs
    assert "## Few-shot + an unlabeled pool: the pool recipe" in text and "### Targets of the pool recipe" in text
    stages = json.loads((out / "stages.json").read_text(encoding="utf-8"))
    assert {s for s in stages if not s.startswith(("pool-", "full-oos/", "full-b77/"))} == {
        "data", "mini-ssl", "dapt-data", "dapt", "evaluate-minilm", "evaluate-minilm-clinc", "evaluate-dapt",
        "evaluate-mini", "evaluate-mini-clinc", "response-data", "response", "response-top", "evaluate-response",
        "evaluate-response-1turn", "response-ceiling"}
    # the pool recipe: one run per set, k and variant (seed 0 in a quick run), each recorded as STAGE/RUN
    assert {s.split("/")[0] for s in stages if s.startswith("pool-")} == {
        "pool-b77", "pool-clinc", "pool-b77-5shot", "pool-ablation", "pool-unseen"}
    # CLINC150 + OOS at full data, with and without outlier exposure, feed the targets row
    assert {s for s in stages if s.startswith("full-oos/")} == {"full-oos/c150-full-e4-oe", "full-oos/c150-full-e4-plain"}
    assert "outlier exposure on `oos_train`" in text
    # BANKING77 at full data with the documented defaults (seed 0 in a quick run) feeds its targets row
    assert {s for s in stages if s.startswith("full-b77/")} == {"full-b77/b77-full-finetune-seed0"}
    assert "| BANKING77 full >= 94.5 |" in text and "`convssl finetune` with its defaults" in text
    # a second run finds every stage done and only re-renders
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "results.py"), "--quick", "--out", str(out),
                            "--doc", str(doc)], check=True, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert again.stdout.count("done already") == len(stages)
