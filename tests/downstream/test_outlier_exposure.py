"""Outlier exposure: out-of-domain texts trained toward a uniform prediction get low in-scope scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from convssl.downstream.config import FinetuneConfig
from convssl.downstream.finetune import finetune_intent
from convssl.downstream.outlier_exposure import OutlierBatches, uniform_cross_entropy
from convssl.downstream.pool import read_pool
from convssl.downstream.recipe import hold_out_outliers
from convssl.evaluate.tasks import load_intent_data, parse_task
from tests.evaluate.slices import banking_slice, sgd_slice, tiny_bert  # noqa: F401  (session fixtures)

FAST = dict(bf16=False, threads=1, batch_size=16, warmup_ratio=0.0, val_fraction=0.0, max_length=32)


def test_uniform_cross_entropy_is_log_intents_at_uniform_and_its_gradient_flattens_the_softmax():
    assert float(uniform_cross_entropy(torch.full((3, 5), 2.0))) == pytest.approx(math.log(5))
    logits = torch.tensor([[4.0, 0.0, -1.0], [0.0, 3.0, 0.5]], requires_grad=True)
    assert float(uniform_cross_entropy(logits.detach())) > math.log(3)
    before = torch.softmax(logits, -1).max(-1).values.detach()
    optimizer = torch.optim.SGD([logits], lr=2.0)
    for _ in range(50):
        optimizer.zero_grad()
        uniform_cross_entropy(logits).backward()
        optimizer.step()
    after = torch.softmax(logits, -1).max(-1).values.detach()
    assert torch.all(after < before) and torch.all(after < 0.4)


def test_outlier_batches_are_seeded_and_never_larger_than_the_texts():
    texts = [f"text {i}" for i in range(10)]
    first, again = OutlierBatches(texts, 4, seed=3), OutlierBatches(texts, 4, seed=3)
    drawn = [first.next() for _ in range(5)]
    assert drawn == [again.next() for _ in range(5)]
    assert all(len(batch) == 4 and len(set(batch)) == 4 for batch in drawn)
    assert len(OutlierBatches(texts[:2], 8, seed=0).next()) == 2
    with pytest.raises(ValueError, match="at least one outlier"):
        OutlierBatches([], 4, seed=0)


def test_held_out_outliers_are_a_capped_disjoint_share():
    texts = [f"line {i}" for i in range(30_000)]
    kept, held = hold_out_outliers(texts, 0.1, seed=0)
    assert len(held) == 1000 and len(kept) == 29_000 and not set(kept) & set(held)
    kept, held = hold_out_outliers(texts[:50], 0.1, seed=0)
    assert len(held) == 5 and sorted(kept + held) == sorted(texts[:50])


def test_outliers_lower_the_in_scope_score_of_unseen_off_domain_text(tiny_bert, banking_slice, sgd_slice, tmp_path):  # noqa: F811
    """Banking intents, with and without SGD user turns (restaurants, events, travel) as outliers: the
    exposed classifier scores *other* SGD turns lower, and still learns the intents."""
    data = load_intent_data(parse_task(f"intent:{banking_slice}"))
    turns = read_pool([str(sgd_slice)], False).texts
    trained, unseen = turns[: len(turns) // 2], turns[len(turns) // 2 :]
    results = {}
    for weight in (0.0, 1.0):
        config = FinetuneConfig(epochs=6, lr=2e-3, outlier_weight=weight, **FAST)
        classifier = finetune_intent(tiny_bert, data.train, None, config, tmp_path / f"w{weight}", outliers=trained)
        _, unseen_scores = classifier.logits_and_scores(unseen)
        _, test_scores = classifier.logits_and_scores([e.text for e in data.test])
        right = np.mean([p.intent == e.label for p, e in zip(classifier.predict([e.text for e in data.test]), data.test)])
        results[weight] = (float(np.mean(unseen_scores)), float(np.mean(test_scores)), float(right))
    (off_plain, in_plain, acc_plain), (off_exposed, in_exposed, acc_exposed) = results[0.0], results[1.0]
    assert off_exposed < 0.7 * off_plain  # off-domain text now looks unsure
    assert in_exposed - off_exposed > in_plain - off_plain  # and is told apart from in-scope text better
    assert acc_exposed > 0.5 and acc_exposed >= acc_plain - 0.1  # the intents are still learned
