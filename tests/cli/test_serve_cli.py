"""`convssl serve` as a user runs it: a subprocess from a YAML config, answering over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from convssl.cli import main
from convssl.models.onnx import onnxruntime_available
from tests._server import free_port, wait_until_healthy
from tests.serve import conftest as serve_fixtures

# The serve tests' session fixtures (a small trained classifier, a responses file), shared here.
tiny_classifier = serve_fixtures.tiny_classifier
responses_file = serve_fixtures.responses_file

REPO = Path(__file__).resolve().parents[2]


def test_serve_without_a_classifier_says_what_is_missing(capsys):
    assert main(["serve", "--port", "1"]) == 2
    assert "classifier_path" in capsys.readouterr().err


def test_serve_rejects_an_unknown_config_key(capsys):
    assert main(["serve", "classifier_path=x", "escalation.nonsense=1"]) == 2
    assert "nonsense" in capsys.readouterr().err


def test_serve_command_from_yaml_answers_chat_and_keeps_the_token_from_env(tmp_path, tiny_classifier,
                                                                          responses_file, minilm_path):
    config = tmp_path / "serve.yaml"
    config.write_text(yaml.safe_dump({
        "db_path": str(tmp_path / "chat.sqlite3"), "classifier_path": str(tiny_classifier),
        "encoder_path": str(minilm_path), "responses_file": str(responses_file),
        "responder": {"bank_size": 200},
    }), encoding="utf-8")
    port = free_port()
    env = {**os.environ, "CONVSSL_AGENT_TOKEN": "from-env", "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "CONVSSL_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen([sys.executable, "-m", "convssl", "serve", "--config", str(config), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_healthy(url, proc, 90)
        models = httpx.get(f"{url}/healthz").json()["models"]
        if onnxruntime_available():  # the default backend: both models exported and checked
            # (int8 for the encoder; the tiny 6-intent classifier's near-tied probabilities may
            # fail the int8 agreement check and then run as fp32 ONNX)
            assert models["encoder"] == "onnx-int8" and models["classifier"] in ("onnx-int8", "onnx-fp32"), models
            assert list((tmp_path / "cache" / "onnx").glob("*/report.json")), "the ONNX files were not cached"
        out = httpx.post(f"{url}/v1/chat", json={"text": "how do I change my PIN?"}).json()
        assert out["intent"] == "change_pin" and "PIN" in out["reply"]
        assert httpx.get(f"{url}/v1/agent/queue", headers={"Authorization": "Bearer from-env"}).status_code == 200
        assert httpx.get(f"{url}/v1/agent/queue", headers={"Authorization": "Bearer x"}).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (tmp_path / "chat.sqlite3").exists()
