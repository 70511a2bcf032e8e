"""`responder.encoder_path`: the response bank gets its own dual encoder, which embeds the user's
turn as a context and ranks the bank's replies, while the shared encoder keeps the other jobs."""

from __future__ import annotations

import json

from tests.evaluate import slices
from tests.serve.conftest import serve_config

tiny_bert = slices.tiny_bert  # a 2-layer, 32-wide random BERT: the shared encoder here

# Contexts that say nothing: a bank keyed by them could not find the right reply.
BANK = [
    {"context": "ok", "response": "I love jazz, and a bit of rock music too."},
    {"context": "ok", "response": "It is sunny and warm here today."},
    {"context": "ok", "response": "My favourite food is pizza with mushrooms."},
]


def test_the_bank_ranks_replies_with_its_own_encoder(tmp_path, tiny_classifier, tiny_bert, minilm_path,
                                                      responses_file):
    from convssl.serve.analysis import Brain

    bank = tmp_path / "bank.jsonl"
    bank.write_text("\n".join(json.dumps(e) for e in BANK), encoding="utf-8")
    overrides = {"batching.backend": "torch", "batching.quantize_encoder": "false",
                 "batching.quantize_classifier": "false", "responder.bank_file": str(bank)}
    config = serve_config(tmp_path / "db.sqlite3", tiny_classifier, tiny_bert, responses_file,
                          **overrides, **{"responder.encoder_path": str(minilm_path)})
    brain = Brain.load(config)
    try:
        assert brain.backends["bank_encoder"] == "torch"
        assert brain.encoder.dim == 32 and brain.bank.keys.shape == (3, 384)  # the bank's keys: its own encoder
        asked = ["what kind of music do you like?", "how is the weather where you are?", "what do you like to eat?"]
        replies = [a.bank_reply for a in brain.analyze(asked)]
        assert replies == [e["response"] for e in BANK]
    finally:
        brain.close()


def test_the_bank_gives_a_prompted_encoder_its_prompts(tmp_path, tiny_classifier, tiny_bert, responses_file):
    """A response encoder saved with prompts (convssl's response-selection presets) embeds the
    bank's replies with its "document" prompt and the user's turn with its "query" prompt."""
    import shutil

    import numpy as np

    from convssl.models.encoder import Encoder
    from convssl.models.pretext_model import write_prompts
    from convssl.serve.analysis import Brain

    encoder_dir = tmp_path / "response-encoder"
    shutil.copytree(tiny_bert, encoder_dir)
    write_prompts(encoder_dir, {"query": "context: ", "document": "reply: "})
    bank = tmp_path / "bank.jsonl"
    bank.write_text("\n".join(json.dumps(e) for e in BANK), encoding="utf-8")
    overrides = {"batching.backend": "torch", "batching.quantize_encoder": "false", "batching.bf16": "false",
                 "batching.quantize_classifier": "false", "responder.bank_file": str(bank)}
    config = serve_config(tmp_path / "db.sqlite3", tiny_classifier, tiny_bert, responses_file,
                          **overrides, **{"responder.encoder_path": str(encoder_dir)})
    brain = Brain.load(config)
    try:
        plain = Encoder.load(tiny_bert)
        replies = [e["response"] for e in BANK]
        np.testing.assert_allclose(brain.bank.keys, plain.embed(["reply: " + r for r in replies], normalize=True),
                                   atol=1e-5)
        assert not np.allclose(brain.bank.keys, plain.embed(replies, normalize=True), atol=1e-3)
        asked = "what kind of music do you like?"
        query = plain.embed(["context: " + asked], normalize=True)
        best = int(np.argmax(query @ brain.bank.keys.T))
        assert brain.analyze([asked])[0].bank_reply == replies[best]
    finally:
        brain.close()
