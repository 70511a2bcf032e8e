"""Train, save and load the subword tokenizers that every later stage shares.

A trained tokenizer is saved as a plain Hugging Face folder so that `transformers`, the
pretraining code and any outside tool open it the same way. Loading goes through one function
that refuses the silent failure modes we have met: a folder without a tokenizer, the network, and
the transformers-5 trap where a tokenizer built from `vocab.txt` alone ends up with 5 tokens.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from convssl.data.special_tokens import (
    BPE_SPECIALS,
    EOT,
    ROLE_TOKENS,
    WORDPIECE_SPECIALS,
    dialogue_special_tokens,
)

if TYPE_CHECKING:  # transformers is an optional dependency: import it only where needed
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

LOG = logging.getLogger(__name__)

TokenizerKind = Literal["wordpiece", "bpe"]
KINDS: tuple[str, ...] = ("wordpiece", "bpe")
DEFAULT_MAX_LENGTH = 512
TRAIN_BATCH = 1000
# Files whose presence means "this folder holds a tokenizer transformers can open".
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model")
# An ordinary word every usable English tokenizer knows; if it maps to [UNK], the vocabulary is broken.
PROBE_WORD = "hello"
MIN_VOCAB = 100


class TokenizerError(ValueError):
    """A tokenizer folder is missing, unreadable or unusable."""


class TokenizerNotFound(TokenizerError, FileNotFoundError):
    """The folder does not exist or holds no tokenizer files (FileNotFoundError for the CLI)."""


# --------------------------------------------------------------------------------------------
# training


def _batched(texts: Iterable[str], size: int = TRAIN_BATCH) -> Iterator[list[str]]:
    """Batches let the Rust trainer count words in parallel instead of one string per call."""
    batch: list[str] = []
    for text in texts:
        if text:
            batch.append(text)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _wordpiece_backend(vocab_size: int, min_frequency: int, lowercase: bool) -> tuple[Tokenizer, Any]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", continuing_subword_prefix="##"))
    # strip_accents=None follows `lowercase`, as in BERT: cased models keep accents.
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=WORDPIECE_SPECIALS + dialogue_special_tokens(),
        continuing_subword_prefix="##",
        show_progress=True,
    )
    return tok, trainer


def _bpe_backend(vocab_size: int, min_frequency: int, lowercase: bool) -> tuple[Tokenizer, Any]:
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=BPE_SPECIALS + dialogue_special_tokens(),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=True,
    )
    return tok, trainer


def _add_post_processor(tok: Tokenizer, kind: str) -> None:
    from tokenizers import processors

    if kind == "wordpiece":
        cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)


def _special_token_kwargs(kind: str) -> dict[str, str]:
    """The named special tokens written to tokenizer_config.json.

    Byte-level BPE has no [CLS]/[SEP]/[MASK] of its own: like GPT-2, `<|endoftext|>` is bos, eos
    and unk, and it also serves as cls/sep (as `<s>`/`</s>` do in RoBERTa) so that code adding
    "cls ... sep" around a turn works with either kind. MLM needs a WordPiece tokenizer.
    """
    if kind == "wordpiece":
        return {
            "pad_token": "[PAD]",
            "unk_token": "[UNK]",
            "cls_token": "[CLS]",
            "sep_token": "[SEP]",
            "mask_token": "[MASK]",
            "bos_token": "[CLS]",
            "eos_token": "[SEP]",
        }
    eot = BPE_SPECIALS[0]
    return {
        "pad_token": BPE_SPECIALS[1],
        "unk_token": eot,
        "bos_token": eot,
        "eos_token": eot,
        "cls_token": eot,
        "sep_token": eot,
    }


def _extra_tokens_key() -> str:
    """transformers 5 renamed `additional_special_tokens` to `extra_special_tokens`."""
    from transformers.tokenization_utils_base import PreTrainedTokenizerBase

    params = inspect.signature(PreTrainedTokenizerBase.add_special_tokens).parameters
    return "extra_special_tokens" if "replace_extra_special_tokens" in params else "additional_special_tokens"


def _save_hf_folder(tok: Tokenizer, kind: str, out_dir: Path, model_max_length: int) -> None:
    from transformers import PreTrainedTokenizerFast

    # BERT-style models take segment ids for pairs; GPT-style ones reject them.
    inputs = ["input_ids", "token_type_ids", "attention_mask"] if kind == "wordpiece" else ["input_ids", "attention_mask"]
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        model_max_length=model_max_length,
        model_input_names=inputs,
        **_special_token_kwargs(kind),
        **{_extra_tokens_key(): dialogue_special_tokens()},
    )
    fast.save_pretrained(str(out_dir))
    _patch_tokenizer_config(out_dir / "tokenizer_config.json", kind)


def _patch_tokenizer_config(path: Path, kind: str) -> None:
    """Write the keys both transformers 4 and 5 read, so either opens the folder the same way.

    transformers 5 writes `extra_special_tokens` as a list, which transformers 4 rejects (it
    expects a mapping there); both read `additional_special_tokens`. Version 5 also no longer
    writes special_tokens_map.json, which older tools still look for.
    """
    config = json.loads(path.read_text(encoding="utf-8"))
    config.pop("extra_special_tokens", None)
    config["additional_special_tokens"] = dialogue_special_tokens()
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config["convssl_tokenizer_kind"] = kind
    config["convssl_role_tokens"] = dict(ROLE_TOKENS)
    config["convssl_eot_token"] = EOT
    path.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    special_map: dict[str, Any] = dict(_special_token_kwargs(kind))
    special_map["additional_special_tokens"] = dialogue_special_tokens()
    (path.parent / "special_tokens_map.json").write_text(
        json.dumps(special_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path,
    kind: TokenizerKind = "wordpiece",
    vocab_size: int = 16000,
    min_frequency: int = 2,
    lowercase: bool = False,
    *,
    model_max_length: int = DEFAULT_MAX_LENGTH,
    length: int | None = None,
) -> Path:
    """Train a WordPiece (BERT-style) or byte-level BPE (GPT-style) tokenizer on `texts`.

    Role tokens and [EOT] are trained in as special tokens, so they get fixed low ids right
    after the kind's own specials and are never split. Returns the saved folder.
    """
    if kind not in KINDS:
        raise TokenizerError(f"tokenizer kind must be one of {list(KINDS)}, got {kind!r}")
    n_specials = len(WORDPIECE_SPECIALS if kind == "wordpiece" else BPE_SPECIALS) + len(dialogue_special_tokens())
    if vocab_size <= max(MIN_VOCAB, n_specials + (256 if kind == "bpe" else 0)):
        raise TokenizerError(f"vocab_size {vocab_size} is too small for a {kind} tokenizer")
    if min_frequency < 1:
        raise TokenizerError(f"min_frequency must be >= 1, got {min_frequency}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build = _wordpiece_backend if kind == "wordpiece" else _bpe_backend
    tok, trainer = build(vocab_size, min_frequency, lowercase)
    batches_len = None if length is None else -(-length // TRAIN_BATCH)
    tok.train_from_iterator(_batched(texts), trainer=trainer, length=batches_len)
    if tok.get_vocab_size() <= MIN_VOCAB:
        raise TokenizerError(
            f"the training texts gave only {tok.get_vocab_size()} tokens: too little text "
            f"(or min_frequency={min_frequency} too high) for a usable tokenizer"
        )
    _add_post_processor(tok, kind)
    _save_hf_folder(tok, kind, out, model_max_length)
    LOG.info("saved %s tokenizer with %d tokens to %s", kind, tok.get_vocab_size(), out)
    return out


# --------------------------------------------------------------------------------------------
# loading


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise TokenizerNotFound(f"tokenizer folder {path} does not exist")
    if not path.is_dir():
        raise TokenizerNotFound(f"{path} is not a folder (expected a tokenizer or model folder)")
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        raise TokenizerNotFound(
            f"{path} holds no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
            "train one with `convssl tokenizer train` or pass a Hugging Face model folder"
        )


def _load_fast(path: Path) -> PreTrainedTokenizerFast:
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    try:
        tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True, use_fast=True)
    except Exception as exc:  # transformers raises many types; name the folder in one message
        if (path / "tokenizer.json").exists():
            try:
                tok = PreTrainedTokenizerFast(tokenizer_file=str(path / "tokenizer.json"))
            except Exception as exc2:
                raise TokenizerError(f"cannot load the tokenizer in {path}: {exc2}") from exc
        else:
            raise TokenizerError(f"cannot load the tokenizer in {path}: {exc}") from exc
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise TokenizerError(
            f"{path} gave a slow {type(tok).__name__}; convssl needs a fast tokenizer (tokenizer.json)"
        )
    return tok


def _ensure_dialogue_tokens(tok: PreTrainedTokenizerFast, path: Path) -> int:
    """Add role/EOT tokens a model's tokenizer lacks; the caller must resize the embeddings."""
    missing = [t for t in dialogue_special_tokens() if t not in tok.get_vocab()]
    special = set(tok.all_special_tokens)
    unflagged = [t for t in dialogue_special_tokens() if t not in missing and t not in special]
    todo = missing + unflagged
    if not todo:
        return 0
    key = _extra_tokens_key()
    replace_kw = "replace_extra_special_tokens" if key == "extra_special_tokens" else "replace_additional_special_tokens"
    added = tok.add_special_tokens({key: todo}, **{replace_kw: False})
    LOG.info("added %d dialogue special tokens %s to the tokenizer of %s", added, missing, path)
    return added


def _check_usable(tok: PreTrainedTokenizerFast, path: Path) -> None:
    if len(tok) <= MIN_VOCAB:
        raise TokenizerError(
            f"the tokenizer in {path} has only {len(tok)} tokens: its vocabulary did not load "
            "(a transformers-5 tokenizer built from vocab.txt alone does this); use a folder with tokenizer.json"
        )
    ids = tok(PROBE_WORD, add_special_tokens=False)["input_ids"]
    if not ids or (tok.unk_token_id is not None and all(i == tok.unk_token_id for i in ids)):
        raise TokenizerError(f"the tokenizer in {path} maps the ordinary word {PROBE_WORD!r} to the unknown token")
    for token in dialogue_special_tokens():
        if tok(token, add_special_tokens=False)["input_ids"] != [tok.convert_tokens_to_ids(token)]:
            raise TokenizerError(f"the tokenizer in {path} splits the special token {token}")


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Open a convssl tokenizer folder or any local Hugging Face model folder, offline.

    A model's tokenizer (e.g. MiniLM) gets the role tokens and [EOT] added as extra special
    tokens when it lacks them, so `len(tok)` can exceed the model's embedding rows: the pretraining
    code resizes the embeddings to `len(tok)` (`model.resize_token_embeddings(len(tok))`).
    """
    folder = Path(path).expanduser()
    _check_folder(folder)
    tok = _load_fast(folder)
    _ensure_dialogue_tokens(tok, folder)
    _check_usable(tok, folder)
    return tok


# --------------------------------------------------------------------------------------------
# description


def tokenizer_kind(tok: PreTrainedTokenizerFast) -> str:
    """'wordpiece', 'bpe' or 'unigram', from the Rust model inside the fast tokenizer."""
    name = type(tok.backend_tokenizer.model).__name__.lower()
    return {"wordpiece": "wordpiece", "bpe": "bpe", "unigram": "unigram", "wordlevel": "wordlevel"}.get(name, name)


def tokenizer_info(tok: PreTrainedTokenizerFast) -> dict[str, Any]:
    """What a manifest or model card needs to know to check that ids mean the same thing."""
    named = {}
    for attr in ("pad", "unk", "cls", "sep", "mask", "bos", "eos"):
        token = getattr(tok, f"{attr}_token", None)
        if token is not None:
            named[attr] = {"token": str(token), "id": tok.convert_tokens_to_ids(str(token))}
    return {
        "kind": tokenizer_kind(tok),
        "vocab_size": len(tok),
        "base_vocab_size": tok.vocab_size,
        "lowercase": _lowercases(tok),
        "model_max_length": int(min(tok.model_max_length, 10**9)),
        "special_tokens": named,
        "role_tokens": {role: {"token": t, "id": tok.convert_tokens_to_ids(t)} for role, t in ROLE_TOKENS.items()},
        "eot": {"token": EOT, "id": tok.convert_tokens_to_ids(EOT)},
    }


def _lowercases(tok: PreTrainedTokenizerFast) -> bool:
    normalizer = tok.backend_tokenizer.normalizer
    return normalizer is not None and normalizer.normalize_str("A") == "a"


def role_token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    """Role name -> token id, for objectives that prefix each turn with its speaker."""
    return {role: tok.convert_tokens_to_ids(token) for role, token in ROLE_TOKENS.items()}
