"""Multitask: sub-batches of each objective in one step, loss = weighted sum."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convssl.config import load_config
from convssl.models import ModelConfig, build_pretext_model
from convssl.pretext import ObjectiveConfig, ObjectiveError, build_objective
from tests.pretext._train import mean, train_losses

TASKS = [
    ObjectiveConfig(name="mlm", weight=1.0),
    ObjectiveConfig(name="contrastive", weight=0.5, max_length=64),
]


def test_batches_carry_one_sub_batch_per_task(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="multitask", tasks=TASKS), wp_tok)
    batches = list(obj.batches(iter(chats), 8, np.random.default_rng(0)))
    assert len(batches) > 5
    for batch in batches:
        assert [p.objective for p in batch.parts] == ["mlm", "contrastive"]
        assert batch.real_tokens == sum(p.real_tokens for p in batch.parts)


def test_loss_is_the_weighted_sum(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="multitask", tasks=TASKS), wp_tok)
    batch = next(obj.batches(iter(chats), 8, np.random.default_rng(0)))
    model = build_pretext_model(ModelConfig(preset="tiny"), wp_tok, [obj]).eval()
    assert set(model.heads) == {"mlm"}
    with torch.no_grad():
        total, metrics = obj.loss(model, batch)
    assert total.item() == pytest.approx(metrics["mlm/loss"] + 0.5 * metrics["contrastive/loss"], rel=1e-5)
    assert "contrastive/recall@1" in metrics and "mlm/accuracy" in metrics


def test_multitask_loss_falls(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="multitask", tasks=TASKS), wp_tok)
    losses = train_losses(obj, chats, steps=30, batch_size=8, n_batches=3, lr=3e-3)
    assert mean(losses[-5:]) < mean(losses[:3]) - 1.0


def test_multitask_from_yaml(tmp_path, wp_tok):
    path = tmp_path / "objective.yaml"
    path.write_text(
        "name: multitask\ntasks:\n  - {name: mlm, mask_rate: 0.2}\n  - {name: nup, weight: 0.3}\n"
    )
    cfg = load_config(ObjectiveConfig, path)
    obj = build_objective(cfg, wp_tok)
    assert [t.name for t in obj.tasks] == ["mlm", "nup"]
    assert obj.tasks[0].config.mask_rate == 0.2 and obj.tasks[1].config.weight == 0.3


@pytest.mark.parametrize(
    ("tasks", "message"),
    [
        ([], "at least one"),
        ([ObjectiveConfig(name="mlm"), ObjectiveConfig(name="mlm")], "once"),
        ([ObjectiveConfig(name="nope")], "unknown objective 'nope'"),
        ([ObjectiveConfig(name="mlm", weight=0.0)], "weights"),
    ],
)
def test_bad_multitask_configs(wp_tok, tasks, message):
    with pytest.raises(ObjectiveError, match=message):
        build_objective(ObjectiveConfig(name="multitask", tasks=tasks), wp_tok)


def test_encoder_and_decoder_objectives_do_not_mix(wp_tok):
    obj = build_objective(
        ObjectiveConfig(name="multitask", tasks=[ObjectiveConfig(name="mlm"), ObjectiveConfig(name="clm")]),
        wp_tok,
    )
    with pytest.raises(ObjectiveError, match="needs a"):
        build_pretext_model(ModelConfig(preset="tiny"), wp_tok, [obj])
