"""Response selection: recall@k among 100 in-batch candidates on held-out SGD dialogues."""

from __future__ import annotations

import numpy as np

from convssl.data.dialogue import Dialogue, Turn
from convssl.evaluate.config import EvaluateConfig, ResponseSettings
from convssl.evaluate.response_selection import make_pairs, recall_at_k
from convssl.evaluate.runner import evaluate


def test_pairs_use_the_last_k_turns_as_context():
    d = Dialogue("d", [Turn("u", f"t{i}") for i in range(5)])
    pairs = dict((resp, ctx) for ctx, resp in make_pairs([d], context_turns=2, max_pairs=0, seed=0))
    assert pairs["t4"] == "t2 t3" and pairs["t1"] == "t0"


def test_recall_is_perfect_for_identical_vectors_and_ordered():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(250, 8)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    perfect = recall_at_k(X, X, 100)
    assert perfect["recall@1"] == 1.0 and perfect["pairs"] == 200 and perfect["candidates"] == 100
    noisy = recall_at_k(X, rng.normal(size=(250, 8)).astype(np.float32), 100)
    assert noisy["recall@10"] >= noisy["recall@1"]


def test_minilm_recall_far_above_chance(minilm_path, sgd_slice, tmp_path):
    config = EvaluateConfig(models=[str(minilm_path)], tasks=[f"response:{sgd_slice}"], random_baseline=False,
                            response=ResponseSettings(max_pairs=200))
    result = evaluate(config, tmp_path)
    rows = {r.kind: r.metrics for r in result.rows}
    minilm = rows["model"]
    assert minilm["candidates"] == 100 and minilm["pairs"] == 200
    assert minilm["recall@10"] >= minilm["recall@1"]
    assert minilm["recall@1"] > 0.04  # chance is 0.01
    assert "tfidf" in rows


def test_a_model_saved_with_prompts_is_scored_with_them(tiny_bert, sgd_slice, tmp_path):
    """A response encoder trained with `context_prompt` / `response_prompt` keeps them in
    config_sentence_transformers.json; response selection embeds contexts and replies with them."""
    import shutil

    from convssl.evaluate.tasks import load_dialogues, parse_task
    from convssl.models.encoder import Encoder
    from convssl.models.pretext_model import write_prompts

    prompted = tmp_path / "prompted"
    shutil.copytree(tiny_bert, prompted)
    write_prompts(prompted, {"query": "context: ", "document": "reply: "})

    def recall(model) -> dict:
        config = EvaluateConfig(models=[str(model)], tasks=[f"response:{sgd_slice}"], random_baseline=False,
                                tfidf_baseline=False, response=ResponseSettings(max_pairs=200))
        return next(r.metrics for r in evaluate(config, tmp_path / model.name).rows if r.kind == "model")

    encoder = Encoder.load(prompted)
    assert encoder.prompts == {"query": "context: ", "document": "reply: "}
    pairs = make_pairs(load_dialogues(parse_task(f"response:{sgd_slice}"))[0], 3, 200, EvaluateConfig().seed)
    by_hand = recall_at_k(encoder.embed(["context: " + c for c, _ in pairs], normalize=True),
                          encoder.embed(["reply: " + r for _, r in pairs], normalize=True), 100)
    with_prompts, without = recall(prompted), recall(tiny_bert)
    assert with_prompts["mrr"] == by_hand["mrr"] and with_prompts["recall@10"] == by_hand["recall@10"]
    assert with_prompts["mrr"] != without["mrr"]
