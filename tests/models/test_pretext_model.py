"""Saving, reopening without convssl, resuming, model cards, continued pretraining from MiniLM."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from convssl.models import ModelConfig, build_pretext_model, load_pretext_model, save_hf_folder
from convssl.models.reference import ModelFolderError
from convssl.pretext import ObjectiveConfig, build_objective

CARD = {
    "data": {"corpus": "chitchat", "dialogues": 150},
    "objectives": [{"name": "mlm", "mask_rate": 0.15, "weight": 1.0}],
    "steps": 1234,
    "tokens_seen": 5_000_000,
    "metrics": {"mlm/loss": 3.21, "mlm/accuracy": 0.41},
}

# Runs in a fresh interpreter: proves that the folder opens with transformers alone.
PLAIN_LOAD = """
import json, sys, torch
from transformers import {auto}, AutoTokenizer
model, info = {auto}.from_pretrained(sys.argv[1], output_loading_info=True)
tok = AutoTokenizer.from_pretrained(sys.argv[1])
ids = torch.tensor(json.loads(sys.argv[2]))
with torch.no_grad():
    out = model(input_ids=ids){select}
print(json.dumps({{"type": type(model).__name__, "missing": sorted(info["missing_keys"]),
    "unexpected": sorted(info["unexpected_keys"]), "out": out.tolist(), "vocab": len(tok),
    "convssl_loaded": any(m.startswith("convssl") for m in sys.modules)}}))
"""


def _plain_load(
    folder: Path, ids: torch.Tensor, auto: str = "AutoModel", select: str = ".last_hidden_state"
) -> dict:
    code = PLAIN_LOAD.format(auto=auto, select=select)
    env = {
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-c", code, str(folder), json.dumps(ids.tolist())],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def mlm_setup(wp_tok, chats):
    obj = build_objective(ObjectiveConfig(name="mlm"), wp_tok)
    batch = next(obj.batches(iter(chats), 4, np.random.default_rng(0)))
    torch.manual_seed(0)
    model = build_pretext_model(ModelConfig(preset="tiny"), wp_tok, [obj])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):  # trained weights, so that a wrong save cannot pass by matching the init
        loss, _ = model(batch, obj)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return obj, batch, model.eval()


def test_saved_encoder_opens_cleanly_with_plain_automodel(tmp_path, wp_tok, mlm_setup):
    obj, batch, model = mlm_setup
    folder = save_hf_folder(model, wp_tok, tmp_path / "final", CARD)
    ids = batch.tensors["input_ids"][:2, :32]
    result = _plain_load(folder, ids)
    assert result["type"] == "BertModel" and not result["convssl_loaded"]
    assert result["missing"] == [] and result["unexpected"] == []
    assert result["vocab"] == len(wp_tok)
    with torch.no_grad():
        ours = model.encode(ids)
    assert torch.allclose(torch.tensor(result["out"]), ours, atol=1e-5)
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "convssl_heads.safetensors",
        "README.md",
    } <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.bin"))


def test_resume_restores_backbone_and_heads(tmp_path, wp_tok, mlm_setup):
    obj, batch, model = mlm_setup
    folder = save_hf_folder(model, wp_tok, tmp_path / "step-3", CARD)
    fresh_obj = build_objective(ObjectiveConfig(name="mlm"), wp_tok)
    resumed = load_pretext_model(folder, [fresh_obj]).eval()
    with torch.no_grad():
        assert resumed.model_config.preset == "tiny"
        assert torch.allclose(resumed(batch, fresh_obj)[0], model(batch, obj)[0], atol=1e-5)
        for (name, a), b in zip(model.heads.state_dict().items(), resumed.heads.state_dict().values()):
            assert torch.equal(a, b), name


def test_model_card_names_data_objectives_steps_tokens_metrics(tmp_path, wp_tok, mlm_setup):
    _, _, model = mlm_setup
    card = (save_hf_folder(model, wp_tok, tmp_path / "m", CARD) / "README.md").read_text()
    from convssl import __version__

    for needle in [
        "chitchat",
        "`mlm`",
        "mask_rate=0.15",
        "1,234",
        "5,000,000",
        "mlm/loss",
        "3.21",
        f"convssl {__version__}",
        "tiny",
    ]:
        assert needle in card, needle
    assert card.startswith("---\nlibrary_name: transformers")
    bare = (save_hf_folder(model, wp_tok, tmp_path / "bare", {}) / "README.md").read_text()
    assert "not recorded" in bare


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_saved_decoder_opens_with_plain_causal_lm(tmp_path, bpe_tok, chats_bpe, arch):
    obj = build_objective(ObjectiveConfig(name="clm", max_length=32), bpe_tok)
    batch = next(obj.batches(iter(chats_bpe), 2, np.random.default_rng(0)))
    model = build_pretext_model(ModelConfig(preset="tiny", arch=arch), bpe_tok, [obj]).eval()
    folder = save_hf_folder(model, bpe_tok, tmp_path / arch, {"objectives": ["clm"]})
    ids = batch.tensors["input_ids"]
    result = _plain_load(folder, ids, auto="AutoModelForCausalLM", select=".logits")
    assert result["missing"] == [] and result["unexpected"] == []
    with torch.no_grad():
        ours = model.lm_logits(model.encode(ids))
    assert torch.allclose(torch.tensor(result["out"]), ours, atol=1e-4)
    assert "AutoModelForCausalLM" in (folder / "README.md").read_text()


def test_continued_pretraining_from_minilm(minilm_path, chats):
    from transformers import AutoModel

    from convssl.data.tokenizer import load_tokenizer
    from tests.pretext._data import chitchat_dialogues, tokenize

    tok = load_tokenizer(minilm_path)  # adds [USR] [SYS] [A] [B] [EOT] to MiniLM's vocabulary
    original = AutoModel.from_pretrained(str(minilm_path), local_files_only=True)
    rows = original.get_input_embeddings().weight.shape[0]
    assert len(tok) == rows + 5
    dialogues = tokenize(tok, chitchat_dialogues(20, start=3000))
    obj = build_objective(ObjectiveConfig(name="mlm", max_length=64), tok)
    batch = next(obj.batches(iter(dialogues), 4, np.random.default_rng(0)))
    model = build_pretext_model(ModelConfig(init_from=str(minilm_path)), tok, [obj])
    emb = model.word_embeddings().weight
    assert emb.shape == (len(tok), 384)
    assert torch.equal(emb[:rows], original.get_input_embeddings().weight)  # pretrained rows kept
    assert torch.equal(
        model.backbone.encoder.layer[0].attention.self.query.weight,
        original.encoder.layer[0].attention.self.query.weight,
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    chance = float(np.log(len(tok)))
    losses = []
    for _ in range(4):
        loss, metrics = model(batch, obj)
        loss.backward()
        if not losses:
            assert model.word_embeddings().weight.grad[rows:].abs().sum() > 0  # role tokens are learnt
        optimizer.step()
        optimizer.zero_grad()
        losses.append(metrics["loss"])
    # all-MiniLM-L6-v2 ships no MLM head, so the first loss is chance (the head is new); on top of
    # the pretrained trunk three steps on the batch take it well below chance.
    assert abs(losses[0] - chance) < 1.5, (losses, chance)
    assert losses[-1] < chance - 2.0, (losses, chance)


@pytest.mark.parametrize("case", ["missing", "file", "no_config", "pickle_only"])
def test_bad_init_from_folders_fail_clearly(tmp_path, wp_tok, case):
    target = tmp_path / "model"
    if case == "file":
        target.write_text("x")
    elif case == "no_config":
        target.mkdir()
    elif case == "pickle_only":
        target.mkdir()
        (target / "config.json").write_text("{}")
        (target / "pytorch_model.bin").write_bytes(b"\0")
    message = {
        "missing": "does not exist",
        "file": "is not a folder",
        "no_config": "no config.json",
        "pickle_only": "safetensors only",
    }[case]
    with pytest.raises(ModelFolderError, match=message):
        build_pretext_model(ModelConfig(init_from=str(target)), wp_tok, [])


def test_load_pretext_model_refuses_foreign_folders(minilm_path, wp_tok):
    obj = build_objective(ObjectiveConfig(name="mlm"), wp_tok)
    with pytest.raises(ModelFolderError, match="not a convssl checkpoint"):
        load_pretext_model(minilm_path, [obj])
