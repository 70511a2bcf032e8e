"""`convssl tokenizer`: train a subword tokenizer on curated dialogues, or inspect one."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

from convssl.cli import UserError

HELP = "train a WordPiece or byte-level BPE tokenizer on curated dialogues, or show how one tokenises"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    train = sub.add_parser("train", help="train a tokenizer on curated dialogue JSONL")
    train.add_argument(
        "inputs", nargs="+", metavar="INPUT",
        help="curated dialogue JSONL (one Dialogue per line) or a prepared folder with dialogues/train.jsonl",
    )
    train.add_argument("--out", required=True, help="folder to write the Hugging Face tokenizer to")
    train.add_argument("--kind", choices=["wordpiece", "bpe"], default="wordpiece",
                       help="WordPiece (BERT-style, for MLM encoders) or byte-level BPE (GPT-style)")
    train.add_argument("--vocab-size", type=int, default=16000, help="target vocabulary size (default 16000)")
    train.add_argument("--min-frequency", type=int, default=2,
                       help="minimum count for a merge or word piece to enter the vocabulary (default 2)")
    train.add_argument("--lowercase", action="store_true", help="lowercase (and, for WordPiece, strip accents)")
    encode = sub.add_parser("encode", help="show the tokens and ids a tokenizer gives for some text")
    encode.add_argument("--tokenizer", required=True, help="tokenizer folder or local Hugging Face model folder")
    encode.add_argument("texts", nargs="+", metavar="TEXT")
    info = sub.add_parser("info", help="print a tokenizer's kind, size and special token ids as JSON")
    info.add_argument("--tokenizer", required=True, help="tokenizer folder or local Hugging Face model folder")
    parser.set_defaults(_parser=parser)


def run(args: argparse.Namespace) -> int:
    actions = {"train": _train, "encode": _encode, "info": _info}
    if not getattr(args, "action", None):
        args._parser.print_help()
        return 2
    return actions[args.action](args)


# -- train ------------------------------------------------------------------------------------


def resolve_inputs(inputs: list[str]) -> list[Path]:
    """Each INPUT is a JSONL file or a prepared folder (its dialogues/train.jsonl is used)."""
    files = []
    for raw in inputs:
        path = Path(raw)
        if path.is_dir():
            candidate = path / "dialogues" / "train.jsonl"
            if not candidate.is_file():
                raise UserError(f"{path} is a folder without dialogues/train.jsonl; run `convssl prepare` first")
            files.append(candidate)
        elif path.is_file():
            files.append(path)
        else:
            raise UserError(f"input {path} does not exist")
    return files


def iter_turn_texts(files: list[Path]) -> Iterator[str]:
    """Turn texts of every dialogue, streamed so the corpus never sits in memory at once."""
    for path in files:
        with path.open(encoding="utf-8") as handle:
            for line_no, line in enumerate(handle, 1):
                if line.strip():
                    yield from _texts_of_line(line, path, line_no)


def _texts_of_line(line: str, path: Path, line_no: int) -> list[str]:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc
    turns = data.get("turns") if isinstance(data, dict) else None
    if not isinstance(turns, list):
        raise UserError(f"{path}:{line_no}: expected a dialogue object with a 'turns' list")
    texts = []
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict) or not isinstance(turn.get("text"), str):
            raise UserError(f"{path}:{line_no}: turn {i} has no 'text' string")
        texts.append(turn["text"])
    return texts


def _train(args: argparse.Namespace) -> int:
    from convssl.data.tokenizer import TokenizerError, load_tokenizer, train_tokenizer

    files = resolve_inputs(args.inputs)
    started = time.perf_counter()
    try:
        out = train_tokenizer(
            iter_turn_texts(files),
            args.out,
            kind=args.kind,
            vocab_size=args.vocab_size,
            min_frequency=args.min_frequency,
            lowercase=args.lowercase,
        )
        tok = load_tokenizer(out)
    except TokenizerError as exc:
        raise UserError(str(exc)) from exc
    seconds = time.perf_counter() - started
    print(f"saved {args.kind} tokenizer to {out} (vocab size {len(tok)}, {seconds:.1f} s)")
    return 0


# -- encode / info ----------------------------------------------------------------------------


def _load(path: str):  # noqa: ANN202 - transformers type imported lazily
    from convssl.data.tokenizer import TokenizerError, load_tokenizer

    try:
        return load_tokenizer(path)
    except TokenizerError as exc:
        raise UserError(str(exc)) from exc


def _encode(args: argparse.Namespace) -> int:
    tok = _load(args.tokenizer)
    for text in args.texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        print(f"{len(ids)} tokens: {' '.join(tok.convert_ids_to_tokens(ids))}")
        print(f"ids: {' '.join(map(str, ids))}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from convssl.data.tokenizer import tokenizer_info

    print(json.dumps(tokenizer_info(_load(args.tokenizer)), indent=2))
    return 0
