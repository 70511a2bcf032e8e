"""Fixtures for the serve tests: a small real intent classifier and a started-once model bundle.

The classifier is a SetFit-style MiniLM with a logistic-regression head trained in the test on a
handful of BANKING77 intents (a few seconds); the bot's models are loaded once per test session
and shared by every server the tests start, so each server starts in well under a second.
"""

from __future__ import annotations

import csv
import json
import threading
from collections import defaultdict
from pathlib import Path

import pytest

INTENTS = ["card_arrival", "lost_or_stolen_card", "exchange_rate", "change_pin", "top_up_failed", "terminate_account"]
TOKEN = "test-agent-token"


def banking_examples(shared_data: Path, intents: list[str], per_intent: int, split: str = "train"):
    from convssl.data.dialogue import IntentExample

    rows: dict[str, list[str]] = defaultdict(list)
    with (shared_data / "banking77" / f"{split}.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            if row["category"] in intents and len(rows[row["category"]]) < per_intent:
                rows[row["category"]].append(row["text"])
    return [IntentExample(text, label, split) for label in intents for text in rows[label]]


def train_classifier(minilm_path: Path, train, out: Path) -> Path:
    from convssl.downstream.config import FinetuneConfig, SetFitConfig
    from convssl.downstream.finetune import finetune_intent

    config = FinetuneConfig(method="setfit", setfit=SetFitConfig(iterations=0, batch_size=8), val_fraction=0.0,
                            threads=1, max_length=32)
    finetune_intent(minilm_path, train, None, config, out)
    return out


@pytest.fixture(scope="session")
def tiny_classifier(tmp_path_factory, shared_data, minilm_path) -> Path:
    train = banking_examples(shared_data, INTENTS, 12)
    return train_classifier(minilm_path, train, tmp_path_factory.mktemp("classifier") / "intent")


@pytest.fixture(scope="session")
def responses_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("responses") / "responses.yaml"
    path.write_text(json.dumps({
        "defaults": {"name": "there"},
        "intents": {
            "card_arrival": ["Hi {name}, cards arrive within 3 working days of ordering."],
            "lost_or_stolen_card": "Please freeze your card in the app right away; we will send a new one.",
            "exchange_rate": "We use the interbank rate, shown in the app before you exchange.",
            "change_pin": "You can change your PIN at any ATM under 'PIN services'.",
            "top_up_failed": "Sorry about that: failed top-ups are returned within 3 working days.",
        },
    }), encoding="utf-8")
    return path


_BRAINS: dict[tuple, object] = {}
_LOCK = threading.Lock()


def serve_config(db_path: Path, classifier: Path, minilm: Path, responses: Path, onnx_cache: Path | None = None,
                 **overrides):
    from convssl.config import apply_overrides, from_dict, to_dict
    from convssl.serve.config import ServeConfig

    data = to_dict(ServeConfig(db_path=str(db_path), classifier_path=str(classifier), encoder_path=str(minilm),
                               responses_file=str(responses), agent_token=TOKEN))
    data["responder"]["bank_size"] = 400
    if onnx_cache is not None:  # the tests' exports stay out of the user's ~/.cache
        data["batching"]["onnx_cache_dir"] = str(onnx_cache)
    apply_overrides(data, [f"{k}={v}" for k, v in overrides.items()])
    return from_dict(ServeConfig, data)


def shared_brain(config):
    """One Brain per model set: loading MiniLM twice per server would dominate the test time."""
    from convssl.serve.analysis import Brain

    key = (config.classifier_path, config.encoder_path, config.responses_file, config.responder.bank_size,
           config.batching.backend)
    with _LOCK:
        if key not in _BRAINS:
            _BRAINS[key] = Brain.load(config)
        brain = _BRAINS[key]
        brain.config = config
        return brain


def start_server(config):
    """A real uvicorn server on a free loopback port, sharing the session's loaded models."""
    from convssl.serve.app import create_app
    from convssl.serve.server import BackgroundServer

    return BackgroundServer(create_app(config, shared_brain(config)))


def agent_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="session")
def onnx_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("onnx-cache")


@pytest.fixture(scope="session")
def make_config(tiny_classifier, minilm_path, responses_file, onnx_cache):
    def make(db_path, **overrides):
        return serve_config(db_path, tiny_classifier, minilm_path, responses_file, onnx_cache, **overrides)

    return make
