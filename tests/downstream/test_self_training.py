"""Pseudo-labels on a real pool: agreement with label propagation beats the teacher alone."""

from __future__ import annotations

import csv
from collections import defaultdict

import numpy as np
import pytest

from convssl.downstream.self_training import agreement_pseudo_labels, confident_pseudo_labels, knn_graph
from convssl.downstream.training import fit_head

INTENTS = ["card_arrival", "exchange_rate", "change_pin", "top_up_failed", "terminate_account",
           "lost_or_stolen_card", "card_linking", "atm_support", "cash_withdrawal_charge", "pending_transfer"]


@pytest.fixture(scope="module")
def embedded_pool(shared_data, minilm_path):
    """2 shots per intent and a 40-per-intent pool of BANKING77 train, embedded by the frozen MiniLM."""
    from convssl.models.encoder import Encoder

    rows: dict[str, list[str]] = defaultdict(list)
    with (shared_data / "banking77" / "train.csv").open(encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["category"] in INTENTS and len(rows[row["category"]]) < 42:
                rows[row["category"]].append(row["text"])
    shots = [(t, i) for i, label in enumerate(INTENTS) for t in rows[label][:2]]
    pool = [(t, i) for i, label in enumerate(INTENTS) for t in rows[label][2:]]
    encoder = Encoder.load(minilm_path, max_length=64)
    shot_emb = encoder.embed([t for t, _ in shots], normalize=True)
    pool_emb = encoder.embed([t for t, _ in pool], normalize=True)
    return shot_emb, np.array([i for _, i in shots]), pool_emb, np.array([i for _, i in pool])


def test_knn_graph_is_symmetric_and_sparse():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    graph = knn_graph(x, k=5)
    assert graph.shape == (50, 50) and abs(graph - graph.T).max() < 1e-6
    assert graph.diagonal().max() == 0 and graph.nnz <= 2 * 50 * 5


def test_agreement_keeps_labels_more_accurate_than_the_teacher(embedded_pool):
    shot_emb, shot_ids, pool_emb, pool_gold = embedded_pool
    weight, bias = fit_head(shot_emb, shot_ids, len(INTENTS), 10.0, 0)
    logits = pool_emb @ weight.numpy().T + bias.numpy()
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    pseudo = agreement_pseudo_labels(shot_emb, shot_ids, pool_emb, probs, len(INTENTS), k=10)
    teacher_accuracy = (pseudo.teacher_labels == pool_gold).mean()
    kept_accuracy = (pseudo.labels == pool_gold[pseudo.rows]).mean()
    assert 0.3 < pseudo.kept_fraction < 1.0
    assert kept_accuracy > teacher_accuracy + 0.02
    # Plain self-training keeps a class-balanced confident share of the teacher's predictions.
    confident = confident_pseudo_labels(probs, len(INTENTS), 0.5)
    counts = np.bincount(pseudo.teacher_labels, minlength=len(INTENTS))
    assert len(confident.rows) == sum(int(np.ceil(0.5 * c)) for c in counts)
