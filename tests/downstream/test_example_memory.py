"""The example memory the pool recipe saves beside its head (`ExampleMemory`)."""

from __future__ import annotations

import pytest
import torch

from convssl.downstream.intent_classifier import ExampleMemory


def unit(rows: list[list[float]]) -> torch.Tensor:
    return torch.nn.functional.normalize(torch.tensor(rows, dtype=torch.float32), dim=-1)


MEMORY = unit([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0, 0.9, 0.1], [0, 0, 1]])
LABELS = torch.tensor([0, 0, 1, 1, 2])


def test_vote_follows_the_nearest_examples():
    memory = ExampleMemory(MEMORY, LABELS, k=2, temperature=0.05)
    votes = memory.vote(unit([[1, 0.05, 0], [0.05, 1, 0]]), num_labels=3)
    assert votes.argmax(dim=1).tolist() == [0, 1]
    assert torch.allclose(votes.sum(dim=1), torch.ones(2))


def test_a_memory_text_is_not_its_own_neighbour_when_excluded():
    memory = ExampleMemory(MEMORY, LABELS, k=1)
    alone = MEMORY[4:5]  # the only example of class 2
    assert memory.vote(alone, 3).argmax().item() == 2
    assert memory.vote(alone, 3, exclude=torch.tensor([4])).argmax().item() != 2


def test_mix_gives_log_probabilities_of_head_and_vote():
    memory = ExampleMemory(MEMORY, LABELS, k=2, weight=0.5)
    head_logits = torch.tensor([[0.0, 0.0, 5.0]])  # the head says class 2
    probs = torch.softmax(memory.mix(head_logits, MEMORY[:1]), dim=-1)  # the memory says class 0
    head = torch.softmax(head_logits, dim=-1)
    assert torch.allclose(probs, 0.5 * head + 0.5 * torch.tensor([[1.0, 0.0, 0.0]]), atol=1e-4)


@pytest.mark.parametrize("kwargs, message", [
    (dict(embeddings=MEMORY, labels=LABELS[:2]), "as many labels as embeddings"),
    (dict(embeddings=MEMORY, labels=LABELS, k=0), "k >= 1"),
    (dict(embeddings=MEMORY, labels=LABELS, weight=0.0), "weight in"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ExampleMemory(**kwargs)


def test_saved_memory_loads_with_its_settings(tmp_path):
    memory = ExampleMemory(MEMORY, LABELS, k=3, weight=0.4, temperature=0.1)
    memory.save(tmp_path / "memory.safetensors")
    loaded = ExampleMemory.load(tmp_path / "memory.safetensors")
    assert loaded.settings() == memory.settings()
    assert torch.equal(loaded.embeddings, memory.embeddings) and torch.equal(loaded.labels, memory.labels)
