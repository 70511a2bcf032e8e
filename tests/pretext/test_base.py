"""The objective registry, configs and batches that the training loop relies on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convssl.data.special_tokens import SpecialTokenError, special_ids
from convssl.pretext import (
    Batch,
    ObjectiveConfig,
    ObjectiveError,
    PretextObjective,
    available_objectives,
    get_objective,
    register_objective,
)


def test_builtin_objectives_are_registered():
    assert {"mlm", "clm", "nup", "contrastive", "multitask"} <= set(available_objectives())
    assert get_objective("mlm").name == "mlm"


def test_unknown_objective_names_the_choices():
    with pytest.raises(ObjectiveError, match="available: .*contrastive"):
        get_objective("mlmm")


def test_a_new_objective_is_one_registered_class(wp_tok, chats):
    @register_objective
    class TurnCount(PretextObjective):
        name = "test_turn_count"

        def batches(self, dialogues, batch_size, rng):
            for d in dialogues:
                yield Batch(
                    {"n": torch.tensor([len(d.turns)])}, real_tokens=d.num_tokens, objective=self.name
                )

        def add_heads(self, model):
            pass

        def loss(self, model, batch):
            return batch.tensors["n"].float().sum(), {}

    assert get_objective("test_turn_count") is TurnCount
    first = next(
        TurnCount(ObjectiveConfig(name="test_turn_count"), wp_tok).batches(
            iter(chats), 1, np.random.default_rng(0)
        )
    )
    assert int(first.tensors["n"]) == len(chats[0].turns)
    with pytest.raises(ValueError, match="already registered"):
        register_objective(type("Other", (TurnCount,), {}))


def test_batch_to_moves_parts():
    inner = Batch({"x": torch.zeros(2, 3)}, 6, "mlm")
    outer = Batch({}, 6, "multitask", [inner]).to("cpu")
    assert outer.parts[0].tensors["x"].shape == (2, 3) and outer.parts[0].real_tokens == 6
    assert inner.size == 2


def test_tokenizer_without_dialogue_tokens_is_refused(minilm_path):
    from transformers import AutoTokenizer

    raw = AutoTokenizer.from_pretrained(str(minilm_path), local_files_only=True)
    with pytest.raises(SpecialTokenError, match=r"\[USR\]"):
        special_ids(raw)


def test_a_setting_of_another_objective_is_refused_and_not_saved(tmp_path):
    from convssl.config import ConfigError, load_config, to_dict

    path = tmp_path / "objective.yaml"
    path.write_text("name: contrastive\nmask_rate: 0.2\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"objective contrastive takes .*not mask_rate \(mask_rate is a setting of mlm\)"):
        load_config(ObjectiveConfig, path)
    saved = to_dict(load_config(ObjectiveConfig, None, ["name=contrastive", "temperature=0.1"]))
    assert saved == {"name": "contrastive", "weight": 1.0, "max_length": 128, "context_turns": 3,
                     "min_context_turns": 0, "temperature": 0.1, "symmetric": True, "hard_negatives": False, "role_tokens": True,
                     "context_prompt": "", "response_prompt": ""}
    assert load_config(ObjectiveConfig, None, [f"{k}={v}" for k, v in saved.items()]).temperature == 0.1
