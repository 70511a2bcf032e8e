"""Small real-data slices and tiny models for the evaluation tests (built per session, in tmp).

A plain module (not a conftest) so that tests/cli/test_evaluate_cli.py can import the same fixtures.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import pytest


def _per_label(rows: list[tuple[str, str]], labels: list[str], n: int) -> list[tuple[str, str]]:
    by: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for text, label in rows:
        if label in labels and len(by[label]) < n:
            by[label].append((text, label))
    return [r for label in labels for r in by[label]]


def _read_csv(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8") as fh:
        return [(r["text"], r["category"]) for r in csv.DictReader(fh)]


@pytest.fixture(scope="session")
def banking_slice(shared_data: Path, tmp_path_factory) -> Path:
    """BANKING77 folder with 10 classes: 20 train and 10 test examples each."""
    train = _read_csv(shared_data / "banking77" / "train.csv")
    test = _read_csv(shared_data / "banking77" / "test.csv")
    labels = sorted({label for _, label in train})[:10]
    folder = tmp_path_factory.mktemp("data") / "banking77"
    folder.mkdir()
    for name, rows, n in (("train.csv", train, 20), ("test.csv", test, 10)):
        with (folder / name).open("w", encoding="utf-8", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["text", "category"])
            writer.writerows(_per_label(rows, labels, n))
    return folder


@pytest.fixture(scope="session")
def clinc_slice(shared_data: Path, tmp_path_factory) -> Path:
    """CLINC150 data_full.json with 8 intents (20 train / 10 val / 15 test each) plus OOS splits."""
    data = json.loads((shared_data / "clinc150" / "data_full.json").read_text(encoding="utf-8"))
    intents = sorted({label for _, label in data["train"]})[::19][:8]
    rows = {key: [tuple(x) for x in items] for key, items in data.items()}
    out = {
        "train": [list(r) for r in _per_label(rows["train"], intents, 20)],
        "val": [list(r) for r in _per_label(rows["val"], intents, 10)],
        "test": [list(r) for r in _per_label(rows["test"], intents, 15)],
        "oos_train": [list(r) for r in rows["oos_train"][:20]],
        "oos_val": [list(r) for r in rows["oos_val"][:40]],
        "oos_test": [list(r) for r in rows["oos_test"][:60]],
    }
    path = tmp_path_factory.mktemp("data") / "clinc150" / "data_full.json"
    path.parent.mkdir()
    path.write_text(json.dumps(out), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sgd_slice(shared_data: Path, tmp_path_factory) -> Path:
    """Two SGD files cut to 40 dialogues each (about 1,000 context/response pairs)."""
    folder = tmp_path_factory.mktemp("data") / "sgd"
    folder.mkdir()
    for name in ("dialogues_001.json", "dialogues_002.json"):
        dialogues = json.loads((shared_data / "sgd" / "train" / name).read_text(encoding="utf-8"))
        (folder / name).write_text(json.dumps(dialogues[:40]), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def tiny_bert(minilm_path: Path, tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with random weights and MiniLM's tokenizer, saved as an HF folder."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    folder = tmp_path_factory.mktemp("models") / "tiny-bert"
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_path))
    assert len(tokenizer) > 30000
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    BertModel(config).save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def constant_bert(tiny_bert: Path, tmp_path_factory) -> Path:
    """tiny_bert with its last LayerNorm zeroed: every text embeds the same, a model that learned
    nothing. Its intent accuracy is what guessing gives (the at-chance warnings' test case)."""
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path_factory.mktemp("models") / "constant-bert"
    shutil.copytree(tiny_bert, folder)
    weights = load_file(str(folder / "model.safetensors"))
    for name in [n for n in weights if n.startswith("encoder.layer.1.output.LayerNorm")]:
        weights[name].zero_()
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory, sgd_slice: Path) -> Path:
    """A 2-layer GPT-2 with a byte-level BPE (vocab 600) trained inline on SGD text."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder = tmp_path_factory.mktemp("models") / "tiny-gpt2"
    folder.mkdir(exist_ok=True)
    texts = [t["utterance"] for f in sorted(sgd_slice.glob("*.json"))
             for d in json.loads(f.read_text(encoding="utf-8")) for t in d["turns"]]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=600, min_frequency=2, special_tokens=["<|endoftext|>", "<pad>"])
    bpe.save(str(folder / "tokenizer.json"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"),
                                        eos_token="<|endoftext|>", pad_token="<pad>")
    assert len(tokenizer) == 600
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=128, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=0, bos_token_id=0, pad_token_id=1)
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder
