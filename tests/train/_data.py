"""A small prepared data folder (tokenizer + shards) built from real chitchat and SGD dialogues.

It has the layout `convssl prepare` writes (`tokenizer/`, `shards/{train,validation}`,
`shards/manifest.json`), built here with the same library functions so the training tests do not
depend on the whole curation pipeline.
"""

from __future__ import annotations

import functools
import json
import shutil
import tempfile
import zlib
from pathlib import Path

TINY_MODEL = {"num_layers": 2, "hidden_size": 32, "num_heads": 2, "intermediate_size": 64}


def _dialogues(shared_data: Path | None, n_chat: int, n_sgd: int) -> list:
    from convssl.data.readers.chitchat import read_chitchat

    dialogues = list(read_chitchat(limit=n_chat))
    sgd_file = shared_data / "sgd" / "train" / "dialogues_001.json" if shared_data else None
    if sgd_file is not None and sgd_file.exists():
        from convssl.data.readers.sgd import read_sgd

        dialogues += list(read_sgd(sgd_file, limit=n_sgd))
    return [d for d in dialogues if len(d.turns) >= 2]


@functools.lru_cache(maxsize=2)
def _build(shared_data: str | None, n_chat: int, n_sgd: int) -> Path:
    from convssl.data.shards import write_manifest, write_shards
    from convssl.data.tokenizer import load_tokenizer, train_tokenizer

    root = Path(tempfile.mkdtemp(prefix="convssl-train-data-"))
    dialogues = _dialogues(Path(shared_data) if shared_data else None, n_chat, n_sgd)
    # Interleave sources so both splits hold peer chat and task dialogues.
    dialogues.sort(key=lambda d: zlib.crc32(d.id.encode()) % 997)
    n_val = max(8, len(dialogues) // 10)
    splits = {"validation": dialogues[:n_val], "train": dialogues[n_val:]}
    train_tokenizer(
        (t.text for d in splits["train"] for t in d.turns), root / "tokenizer", vocab_size=2000, lowercase=True
    )
    tokenizer = load_tokenizer(root / "tokenizer")
    stats = {
        name: write_shards(items, tokenizer, root / "shards", name, shard_tokens=20_000, progress=False)
        for name, items in splits.items()
    }
    write_manifest(root / "shards", root / "tokenizer", stats, ["chitchat", "sgd"])
    return root


def prepared_data(shared_data: Path | None, dest: Path, n_chat: int = 400, n_sgd: int = 100) -> Path:
    """A private copy (tests may write beside it) of the cached prepared folder."""
    src = _build(str(shared_data) if shared_data else None, n_chat, n_sgd)
    shutil.copytree(src, dest)
    manifest = dest / "shards" / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["tokenizer"] = {"name": "tokenizer", "relative_path": "../tokenizer", "info": data["tokenizer"].get("info")}
    manifest.write_text(json.dumps(data), encoding="utf-8")
    return dest


def tiny_overrides(data: Path, **extra) -> list[str]:
    """Overrides that make any preset a seconds-long CPU run on a 2-layer, 32-wide model."""
    items = {
        "data": str(data),
        "model.preset": "tiny",
        **{f"model.overrides.{k}": v for k, v in TINY_MODEL.items()},
        "threads": 1,
        "progress": False,
        "tensorboard": False,
    }
    items.update(extra)
    return [f"{k}={v}" for k, v in items.items()]
