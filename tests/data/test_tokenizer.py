"""Tokenizer training and loading on real chit-chat and SGD text."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from convssl.data.special_tokens import (
    BPE_SPECIALS,
    EOT,
    ROLE_TOKENS,
    WORDPIECE_SPECIALS,
    dialogue_special_tokens,
)
from convssl.data.tokenizer import (
    TokenizerError,
    TokenizerNotFound,
    load_tokenizer,
    role_token_ids,
    tokenizer_info,
    train_tokenizer,
)

transformers = pytest.importorskip("transformers")


def _chitchat_texts(limit: int) -> list[str]:
    import chitchat_dataset

    path = Path(os.path.dirname(chitchat_dataset.__file__)) / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    texts = []
    for conv in list(data.values())[:limit]:
        texts += [" ".join(m["text"] for m in turn) for turn in conv["messages"]]
    return texts


def _sgd_texts(shared_data: Path) -> list[str]:
    dialogues = json.loads((shared_data / "sgd" / "train" / "dialogues_001.json").read_text(encoding="utf-8"))
    return [t["utterance"] for d in dialogues for t in d["turns"]]


@pytest.fixture(scope="module")
def corpus(shared_data: Path) -> list[str]:
    return _chitchat_texts(400) + _sgd_texts(shared_data)


@pytest.fixture(scope="module", params=["wordpiece", "bpe"])
def trained(request, corpus, tmp_path_factory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp(request.param)
    return request.param, train_tokenizer(corpus, out, kind=request.param, vocab_size=3000)


HELD_OUT = [
    "Hello! How are you doing today?",
    "I want to book a table for two at an Italian restaurant in San Jose.",
    "Can you find me a flight to New York leaving on March 3rd?",
]


def test_folder_loads_with_auto_tokenizer_and_tokenizer_file(trained):
    kind, folder = trained
    assert {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} <= {p.name for p in folder.iterdir()}
    expected = json.loads((folder / "tokenizer.json").read_text())["model"]["vocab"]
    auto = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    direct = transformers.PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    assert 2500 < len(auto) == len(direct) == len(expected) <= 3000
    assert auto.model_max_length == 512
    ours = load_tokenizer(folder)
    assert len(ours) == len(auto)
    assert auto.encode(HELD_OUT[1]) == ours.encode(HELD_OUT[1])


def test_special_tokens_named_in_config(trained):
    kind, folder = trained
    tok = load_tokenizer(folder)
    if kind == "wordpiece":
        assert (tok.pad_token, tok.unk_token, tok.cls_token, tok.sep_token, tok.mask_token) == tuple(WORDPIECE_SPECIALS)
        assert tok.convert_tokens_to_ids(WORDPIECE_SPECIALS) == [0, 1, 2, 3, 4]
    else:
        assert (tok.bos_token, tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|endoftext|>", "<pad>")
        assert tok.convert_tokens_to_ids(BPE_SPECIALS) == [0, 1]
        assert tok.mask_token is None
    special_map = json.loads((folder / "special_tokens_map.json").read_text())
    assert special_map["additional_special_tokens"] == dialogue_special_tokens()
    assert set(dialogue_special_tokens()) <= set(tok.all_special_tokens)


def test_role_tokens_are_single_tokens_never_split(trained):
    _, folder = trained
    tok = load_tokenizer(folder)
    ids = role_token_ids(tok)
    assert len(set(ids.values())) == 4 and max(ids.values()) < 20  # trained in right after the specials
    for role, token in ROLE_TOKENS.items():
        encoded = tok(f"{token} hello there {EOT}", add_special_tokens=False)["input_ids"]
        assert encoded[0] == ids[role]
        assert encoded[-1] == tok.convert_tokens_to_ids(EOT)
    # lower case text must not turn "[USR]" into something else either
    assert tok("[usr]", add_special_tokens=False)["input_ids"] != [ids["user"]]


def test_round_trip_keeps_words(trained):
    kind, folder = trained
    tok = load_tokenizer(folder)
    for text in HELD_OUT:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.unk_token_id not in ids
        decoded = tok.decode(ids)
        if kind == "bpe":
            assert decoded == text  # byte-level BPE is lossless
        else:  # WordPiece decoding puts spaces around punctuation but keeps every word
            assert re.findall(r"\w+", decoded) == re.findall(r"\w+", text)
        with_framing = tok.decode(tok(text)["input_ids"], skip_special_tokens=True)
        assert re.findall(r"\w+", with_framing) == re.findall(r"\w+", text)


def test_wordpiece_frames_with_cls_and_sep(trained):
    kind, folder = trained
    tok = load_tokenizer(folder)
    single = tok("hello there")["input_ids"]
    pair = tok("hello", "there")
    if kind == "wordpiece":
        assert single[0] == tok.cls_token_id and single[-1] == tok.sep_token_id
        assert tok.convert_ids_to_tokens(pair["input_ids"]) == ["[CLS]", "hello", "[SEP]", "there", "[SEP]"]
        assert pair["token_type_ids"] == [0, 0, 0, 1, 1]
    else:
        assert single == tok("hello there", add_special_tokens=False)["input_ids"]


def test_tokenizer_info(trained):
    kind, folder = trained
    info = tokenizer_info(load_tokenizer(folder))
    assert info["kind"] == kind
    assert info["vocab_size"] == len(load_tokenizer(folder))
    assert info["role_tokens"]["agent"]["token"] == "[SYS]"
    assert info["eot"]["id"] == load_tokenizer(folder).convert_tokens_to_ids(EOT)
    assert info["special_tokens"]["pad"]["id"] in (0, 1)
    json.dumps(info)  # goes straight into the shard manifest


def test_lowercase_option(corpus, tmp_path):
    tok = load_tokenizer(train_tokenizer(corpus, tmp_path, vocab_size=2000, lowercase=True))
    assert tok("HELLO There")["input_ids"] == tok("hello there")["input_ids"]
    assert tokenizer_info(tok)["lowercase"] is True
    assert tok.convert_tokens_to_ids("[USR]") == tok("[USR]", add_special_tokens=False)["input_ids"][0]


def test_loads_minilm_tokenizer_and_adds_role_tokens(minilm_path):
    tok = load_tokenizer(minilm_path)
    assert tok.vocab_size == 30522
    assert len(tok) == 30522 + len(dialogue_special_tokens())  # the model must resize its embeddings
    assert tok("hello", add_special_tokens=False)["input_ids"] == [7592]  # unchanged ids of the real vocabulary
    assert tok.convert_ids_to_tokens(tok("[USR] hello [EOT]")["input_ids"]) == ["[CLS]", "[USR]", "hello", "[EOT]", "[SEP]"]
    info = tokenizer_info(tok)
    assert info["kind"] == "wordpiece" and info["lowercase"] is True and info["base_vocab_size"] == 30522


def test_error_on_folder_without_tokenizer(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(TokenizerNotFound, match=str(tmp_path)):
        load_tokenizer(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing")


def test_refuses_five_token_vocabulary(tmp_path):
    """The transformers-5 trap: a vocab.txt-only BERT folder that loads with 5 tokens."""
    (tmp_path / "vocab.txt").write_text("\n".join(WORDPIECE_SPECIALS) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer"}))
    with pytest.raises(TokenizerError, match="tokens"):
        load_tokenizer(tmp_path)


def test_vocab_txt_only_model_folder_loads_its_whole_vocabulary(minilm_path, tmp_path):
    """The transformers-5 trap with a real vocabulary: `BertTokenizerFast(vocab_file=...)` can
    come back with only the 5 BERT specials. `load_tokenizer` on a folder holding just MiniLM's
    vocab.txt and tokenizer_config.json must give all 30,522 entries (or refuse), never 5."""
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((minilm_path / name).read_bytes())
    vocab_lines = len((tmp_path / "vocab.txt").read_text(encoding="utf-8").splitlines())
    assert vocab_lines == 30522
    tok = load_tokenizer(tmp_path)
    assert len(tok) == vocab_lines + len(dialogue_special_tokens())
    assert tok("hello world", add_special_tokens=False)["input_ids"] == [7592, 2088]  # the real ids


def test_bad_training_arguments(corpus, tmp_path):
    with pytest.raises(TokenizerError, match="kind"):
        train_tokenizer(corpus[:10], tmp_path, kind="unigram")  # type: ignore[arg-type]
    with pytest.raises(TokenizerError, match="too small"):
        train_tokenizer(corpus[:10], tmp_path, vocab_size=50)
    with pytest.raises(TokenizerError, match="too little text"):
        train_tokenizer(["hi there"] * 3, tmp_path, vocab_size=1000, min_frequency=5)
