"""The bot's models on ONNX Runtime (the default) decide like the PyTorch originals, the choice is
visible in /healthz, and without onnxruntime the bot still starts, on PyTorch."""

from __future__ import annotations

import sys

import httpx
import pytest

from tests.conftest import need_module
from tests.serve.conftest import INTENTS, banking_examples, shared_brain, start_server

SMALL_TALK = ["hi, how are you?", "what are you up to this weekend?", "do you like music?", "good morning!"]
PERSON = ["I want to talk to a human", "can I speak with a real person please", "get me a live agent now"]


@pytest.fixture(scope="module")
def texts(shared_data) -> list[str]:
    return [e.text for e in banking_examples(shared_data, INTENTS, 8, split="test")] + SMALL_TALK + PERSON


@pytest.fixture(scope="module")
def torch_brain(tmp_path_factory, make_config):
    """The bot as it starts where onnxruntime is not installed (import made to fail), fp32."""
    from convssl.serve.analysis import Brain

    config = make_config(tmp_path_factory.mktemp("db") / "t.sqlite3",
                         **{"batching.quantize_encoder": "false", "batching.quantize_classifier": "false"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "onnxruntime", None)
        brain = Brain.load(config)
    brain.config = config
    return brain


def test_default_backend_is_onnx_and_health_says_so(tmp_path, make_config):
    need_module("onnxruntime", "onnxruntime")
    config = make_config(tmp_path / "h.sqlite3")
    brain = shared_brain(config)
    assert brain.backends["encoder"] == "onnx-int8"
    assert brain.backends["classifier"] in ("onnx-int8", "onnx-fp32")  # int8 only if it passed its check
    assert brain.encoder.report.checks["int8"]["mean_cosine"] >= config.batching.min_cosine
    with start_server(config) as srv:
        health = httpx.get(f"{srv.url}/healthz", timeout=30).json()
    assert health["models"] == brain.backends


def test_without_onnxruntime_the_bot_runs_on_torch(torch_brain):
    assert torch_brain.backends == {"classifier": "torch", "encoder": "torch"}
    assert type(torch_brain.encoder).__name__ == "Encoder"


def test_onnx_brain_decides_like_the_torch_brain(tmp_path, make_config, torch_brain, texts):
    need_module("onnxruntime", "onnxruntime")
    from convssl.serve.policy import Policy, SessionState

    config = make_config(tmp_path / "o.sqlite3")
    onnx_brain = shared_brain(config)
    fast, ref = onnx_brain.analyze(texts), torch_brain.analyze(texts)
    policy = Policy.for_brain(torch_brain, config, seed=0)
    same_intent = sum(a.intent == b.intent for a, b in zip(fast, ref)) / len(texts)
    assert same_intent >= 0.95, same_intent
    for text, a, b in zip(texts, fast, ref):
        assert abs(a.human_score - b.human_score) < 0.05, text
        da, db = policy.decide(a, SessionState()), policy.decide(b, SessionState())
        if a.intent == b.intent:
            assert (da.escalate, da.source) == (db.escalate, db.source), text
    asked = [policy.asks_for_human(a) for a in fast[-len(PERSON):]]
    assert all(asked), asked


def test_torch_int8_is_kept_only_when_it_passes_the_check(make_config, tmp_path, minilm_path, torch_brain):
    from convssl.models.encoder import Encoder
    from convssl.serve.analysis import torch_int8_if_close
    from convssl.serve.detectors import HUMAN_REQUEST_EXAMPLES

    probes = list(HUMAN_REQUEST_EXAMPLES) + SMALL_TALK
    strict = make_config(tmp_path / "s.sqlite3", **{"batching.min_cosine": "0.9999"})
    enc = Encoder.load(minilm_path, max_length=48)
    before = enc.model
    assert not torch_int8_if_close("encoder", enc, probes, strict)
    assert enc.model is before  # rejected: fp32 kept
    lenient = make_config(tmp_path / "l.sqlite3", **{"batching.min_cosine": "0.5"})
    assert torch_int8_if_close("encoder", enc, probes, lenient)
    assert enc.model is not before
