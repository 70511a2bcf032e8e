"""The nearest-example scope check (`convssl/serve/scope.py`) on a real slice of BANKING77 and MiniLM."""

from __future__ import annotations

import numpy as np
import pytest

from convssl.serve.scope import ScopeCheck, read_scope_examples
from tests.serve.conftest import INTENTS, banking_examples

# Banking questions that none of the six test intents covers.
OUTSIDE = ["can I get a mortgage from you?", "what interest rate do you pay on savings?",
           "can you help me with my tax return?", "I want a credit card with cashback",
           "how do I apply for a car loan?", "what is my credit score?"]


@pytest.fixture(scope="module")
def encoder(minilm_path):
    from convssl.models.encoder import Encoder

    return Encoder.load(str(minilm_path), max_length=64)


@pytest.fixture(scope="module")
def train(shared_data):
    return banking_examples(shared_data, INTENTS, 12)


def test_keeps_held_out_questions_of_its_intents_and_rejects_banking_questions_outside_them(
        shared_data, train, encoder):
    scope = ScopeCheck([e.text for e in train], [e.label for e in train], encoder)
    held_out = banking_examples(shared_data, INTENTS, 20, "test")
    emb = encoder.embed([e.text for e in held_out], normalize=True)
    kept = scope.accepts(emb, [e.label for e in held_out]).mean()
    assert kept >= 0.9  # the threshold keeps 95% of the training questions, each left out in turn
    # scored against the intent the nearest training questions would give them: still too far
    outside = encoder.embed(OUTSIDE, normalize=True)
    for intent in INTENTS:
        assert not scope.accepts(outside, [intent] * len(OUTSIDE)).any(), intent


def test_threshold_is_calibrated_leave_one_out(train, encoder):
    texts, labels = [e.text for e in train], [e.label for e in train]
    strict, lenient = (ScopeCheck(texts, labels, encoder, keep_fraction=f) for f in (0.5, 1.0))
    assert strict.threshold > lenient.threshold
    # a question counted as its own neighbour would always score 1.0; left out, none does
    assert lenient.threshold < 0.99
    own = lenient.scores(encoder.embed(texts, normalize=True), labels)
    assert (own >= lenient.threshold).all()  # with itself among the neighbours, every one passes
    assert lenient.scores(np.zeros((1, 384), dtype=np.float32), ["no_such_intent"])[0] == 0


def test_bad_reference_data_fails_with_one_clear_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="scope.examples: .*nowhere.csv does not exist"):
        read_scope_examples([str(tmp_path / "nowhere.csv")], INTENTS)
    other = tmp_path / "other.csv"
    other.write_text("text,label\nbook a table for two,restaurant\nplay some jazz,music\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"other.csv: no training questions with the classifier's intents"):
        read_scope_examples([str(other)], INTENTS)
    with pytest.raises(ValueError, match="at least one labelled training question"):
        ScopeCheck([], [], encoder=None)
