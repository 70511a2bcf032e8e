"""scripts/chaos_test.py in its short form: poison in the load, one `kill -9` mid-load, a restart,
pages reconnecting; nothing acknowledged may be lost or stored twice, no 5xx. The full run (5
cycles) is the documented command in docs/serving.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_chaos_short_form_loses_and_duplicates_nothing(tmp_path, tiny_classifier, responses_file, minilm_path):
    out = tmp_path / "chaos.json"
    # a separate process: the script kills servers with SIGKILL and must not share this one's state
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "chaos_test.py"), "--classifier", str(tiny_classifier),
                           "--config", "serve", "--cycles", "1", "--seconds", "3", "--clients", "6",
                           "--listeners", "2", "--poison-every", "10", "--out", str(out),
                           f"responses_file={responses_file}", f"encoder_path={minilm_path}",
                           # PyTorch fp32: each restart loads in seconds, no ONNX export or int8 check
                           "responder.bank_size=200", "batching.backend=torch", "batching.quantize_encoder=false",
                           "batching.quantize_classifier=false"],
                          cwd=REPO, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["acknowledged_messages"] > 20 and result["acknowledged_agent_replies"] > 0
    assert result["lost_messages"] == result["duplicated_messages"] == 0
    assert result["lost_ratings"] == result["lost_labels"] == result["agent_replies_not_pushed"] == 0
    assert result["server_errors"] == 0 and any(k.startswith("poison ") for k in result["statuses"])
