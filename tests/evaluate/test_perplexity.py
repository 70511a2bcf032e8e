"""Perplexity of causal LMs on held-out dialogues; encoders get a clear refusal."""

from __future__ import annotations

import math

import pytest
import torch

from convssl.evaluate.config import EvaluateConfig
from convssl.evaluate.perplexity import NotCausalLM, load_causal_lm, perplexity
from convssl.evaluate.runner import evaluate
from convssl.evaluate.tasks import TaskSpec, load_dialogues


def test_bert_is_refused_with_a_clear_message(tiny_bert):
    with pytest.raises(NotCausalLM, match="not a causal language model"):
        load_causal_lm(tiny_bert)


def test_training_lowers_perplexity_below_random_init(tiny_gpt2, sgd_slice):
    dialogues, _ = load_dialogues(TaskSpec("ppl", str(sgd_slice)))
    model, tok = load_causal_lm(tiny_gpt2)
    before = perplexity(model, tok, dialogues[:20], max_length=128)
    assert math.isfinite(before["perplexity"]) and before["tokens"] > 1000
    assert before["perplexity"] == pytest.approx(len(tok), rel=0.5)  # random weights: about uniform
    ids = tok(" ".join(t.text for d in dialogues for t in d.turns))["input_ids"]
    windows = torch.tensor(ids[: 64 * (len(ids) // 64)]).view(-1, 64)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(60):
        batch = windows[(step * 16) % len(windows) :][:16]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    after = perplexity(model, tok, dialogues[:20], max_length=128)
    assert after["perplexity"] < 0.5 * before["perplexity"]


def test_runner_reports_ppl_and_skips_encoders(tiny_gpt2, tiny_bert, sgd_slice, tmp_path):
    config = EvaluateConfig(models=[str(tiny_gpt2), str(tiny_bert)], tasks=[f"ppl:{sgd_slice}"])
    result = evaluate(config, tmp_path)
    rows = {(r.model, r.kind): r for r in result.rows}
    assert math.isfinite(rows[("tiny-gpt2", "model")].metrics["perplexity"])
    assert math.isfinite(rows[("random-init(tiny-gpt2)", "random-init")].metrics["perplexity"])
    assert "not a causal language model" in rows[("tiny-bert", "model")].note
    assert "not a causal language model" in (tmp_path / "report.md").read_text(encoding="utf-8")
