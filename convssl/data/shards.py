"""Pre-tokenised dialogue shards: written once by `convssl prepare`, streamed by pretraining.

Tokenising on the fly would cost more CPU than a small encoder's forward pass on our 2-core
machines, so dialogues are tokenised once with the Rust batch API and stored as flat numpy
arrays. Readers memory-map one shard at a time, so corpus size never bounds memory.

Layout of `OUT/{split}/shard-NNNNN.*` (one shard holds whole dialogues only):

- `tokens.npy`    all token ids of the shard, concatenated (uint16 if the vocabulary fits, else uint32)
- `turns.npy`     int64 turn start offsets into tokens, plus one final end offset (n_turns + 1)
- `dialogues.npy` int64 dialogue start offsets into turns, plus one final end offset (n_dialogues + 1)
- `roles.npy`     uint8 role code per turn (index into `ROLES`)
- `ids.json`      dialogue ids, in shard order

`OUT/manifest.json` lists, per split, the shards and their counts: only listed shards are read.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from convssl.data.dialogue import ROLES, Dialogue
from convssl.utils.progress import progress_bar

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ARRAY_PARTS = ("tokens", "turns", "dialogues", "roles")
SHARD_KEYS = {"name", "dialogues", "turns", "tokens"}
ROLE_CODES = {role: code for code, role in enumerate(ROLES)}


class ShardError(ValueError):
    """Shards or their manifest are missing, inconsistent or unreadable."""


class ShardsNotFound(ShardError, FileNotFoundError):
    """No manifest or a listed shard file is missing (FileNotFoundError for the CLI)."""


@dataclass
class TokenizedDialogue:
    """One dialogue as token ids per turn, without any special tokens.

    The pretext objectives add [CLS], role tokens and [SEP] themselves, each in its own way.
    """

    id: str
    turns: list[np.ndarray]
    roles: list[str]

    @property
    def num_tokens(self) -> int:
        return int(sum(len(t) for t in self.turns))


# --------------------------------------------------------------------------------------------
# writing


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest unsigned type that holds every id: halves disk and page-cache use."""
    return np.dtype(np.uint16) if vocab_size <= 65536 else np.dtype(np.uint32)


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _save_npy_tmp(path: Path, array: np.ndarray) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        np.save(handle, array, allow_pickle=False)
    return tmp


def _save_json_tmp(path: Path, data: Any) -> Path:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return tmp


class _ShardBuffer:
    """Collects whole dialogues until the shard is full, then writes its five files."""

    def __init__(self, split_dir: Path, dtype: np.dtype) -> None:
        self.split_dir = split_dir
        self.dtype = dtype
        self.index = 0
        self.written: list[dict[str, Any]] = []
        self._reset()

    def _reset(self) -> None:
        self.token_chunks: list[np.ndarray] = []
        self.length_chunks: list[np.ndarray] = []
        self.dialogue_turns: list[int] = []
        self.role_chunks: list[np.ndarray] = []
        self.ids: list[str] = []
        self.n_tokens = 0
        self.n_turns = 0

    def add(self, dialogue_id: str, tokens: np.ndarray, turn_lengths: np.ndarray, roles: np.ndarray) -> None:
        """One dialogue: its flat token ids, the length of each turn and each turn's role code."""
        self.token_chunks.append(tokens)
        self.length_chunks.append(turn_lengths)
        self.role_chunks.append(roles)
        self.dialogue_turns.append(len(turn_lengths))
        self.ids.append(dialogue_id)
        self.n_tokens += len(tokens)
        self.n_turns += len(turn_lengths)

    def flush(self) -> None:
        if not self.ids:
            return
        name = _shard_name(self.index)
        arrays = {
            "tokens": np.concatenate(self.token_chunks).astype(self.dtype, copy=False),
            "turns": _offsets(np.concatenate(self.length_chunks)),
            "dialogues": _offsets(np.asarray(self.dialogue_turns, dtype=np.int64)),
            "roles": np.concatenate(self.role_chunks).astype(np.uint8, copy=False),
        }
        self._write_atomic(name, arrays)
        self.written.append({"name": name, "dialogues": len(self.ids), "turns": self.n_turns, "tokens": self.n_tokens})
        self.index += 1
        self._reset()

    def _write_atomic(self, name: str, arrays: dict[str, np.ndarray]) -> None:
        """All parts go to temporary names first; renames happen only once every part is on disk."""
        temps: list[tuple[Path, Path]] = []
        for part, array in arrays.items():
            final = self.split_dir / f"{name}.{part}.npy"
            temps.append((_save_npy_tmp(final, array), final))
        final_ids = self.split_dir / f"{name}.ids.json"
        temps.append((_save_json_tmp(final_ids, self.ids), final_ids))
        for tmp, final in temps:
            os.replace(tmp, final)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    """Lengths -> start offsets plus the final end offset (n + 1 values)."""
    out = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out[1:])
    return out


def _encode_texts(backend: Any, texts: list[str], dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Encode a batch in Rust, then flatten it in one numpy call: (flat ids, per-text lengths)."""
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)
    ids = [enc.ids for enc in encode(texts, add_special_tokens=False)]
    lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
    flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum()))
    return flat, lengths


def _raw_text_backend(tokenizer: PreTrainedTokenizerFast) -> Any:
    """A copy of the Rust tokenizer that treats "[USR]" typed in a chat as text, not as a role.

    Data must never inject control tokens: the objectives add role and separator tokens
    themselves, from the stored roles.
    """
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.encode_special_tokens = True
    backend.no_truncation()
    backend.no_padding()
    return backend


def _role_codes(dialogues: list[Dialogue]) -> np.ndarray:
    try:
        return np.fromiter((ROLE_CODES[t.role] for d in dialogues for t in d.turns), dtype=np.uint8)
    except KeyError:
        for dialogue in dialogues:
            for i, turn in enumerate(dialogue.turns):
                if turn.role not in ROLE_CODES:
                    raise ShardError(
                        f"dialogue {dialogue.id!r} turn {i}: role {turn.role!r} is not one of {list(ROLES)}"
                    ) from None
        raise


def _batches_of_dialogues(dialogues: Iterable[Dialogue], batch_turns: int) -> Iterator[list[Dialogue]]:
    batch: list[Dialogue] = []
    n_turns = 0
    for dialogue in dialogues:
        batch.append(dialogue)
        n_turns += len(dialogue.turns)
        if n_turns >= batch_turns:
            yield batch
            batch, n_turns = [], 0
    if batch:
        yield batch


def _invalidate_manifest(out_dir: Path) -> None:
    """Rewriting shards that an old manifest lists would let a reader mix old and new data."""
    manifest = out_dir / MANIFEST
    if manifest.exists():
        LOG.info("removing %s: the shards are being rewritten; write_manifest writes a new one", manifest)
        manifest.unlink()


def _remove_stale_shards(split_dir: Path, keep: set[str]) -> None:
    for path in split_dir.glob("shard-*.*"):
        if path.name.split(".")[0] not in keep:
            path.unlink()


def write_shards(
    dialogues: Iterable[Dialogue],
    tokenizer: PreTrainedTokenizerFast,
    out_dir: str | Path,
    split: str,
    shard_tokens: int = 8_000_000,
    batch_size: int = 2048,
    source: str = "",
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Tokenise `dialogues` in batches of about `batch_size` turns and write the split's shards.

    Returns the split's stats (counts, dtype, shard list) for `write_manifest`. Dialogues without
    turns are skipped and counted; empty turns are kept (as zero tokens) so turn indices match.
    """
    if shard_tokens < 1 or batch_size < 1:
        raise ShardError(f"shard_tokens and batch_size must be positive, got {shard_tokens} and {batch_size}")
    from convssl.data.tokenizer import tokenizer_info

    split_dir = Path(out_dir) / split
    split_dir.mkdir(parents=True, exist_ok=True)
    _invalidate_manifest(Path(out_dir))
    for leftover in split_dir.glob(".shard-*.tmp*"):  # from a crashed earlier run
        leftover.unlink()
    info = tokenizer_info(tokenizer)
    dtype = token_dtype(info["vocab_size"])
    backend = _raw_text_backend(tokenizer)
    buffer = _ShardBuffer(split_dir, dtype)
    skipped = 0
    started = time.perf_counter()
    bar = _progress_bar(progress, split)
    for batch in _batches_of_dialogues(dialogues, batch_size):
        kept = [d for d in batch if d.turns]
        skipped += len(batch) - len(kept)
        roles = _role_codes(kept)
        flat, lengths = _encode_texts(backend, [t.text for d in kept for t in d.turns], dtype)
        turn_ends = _offsets(np.fromiter((len(d.turns) for d in kept), dtype=np.int64, count=len(kept)))
        token_ends = _offsets(lengths)
        for j, dialogue in enumerate(kept):
            t0, t1 = int(turn_ends[j]), int(turn_ends[j + 1])
            k0, k1 = int(token_ends[t0]), int(token_ends[t1])
            if buffer.ids and buffer.n_tokens + (k1 - k0) > shard_tokens:
                buffer.flush()
            buffer.add(dialogue.id, flat[k0:k1], lengths[t0:t1], roles[t0:t1])
        if bar is not None:
            bar.update(len(batch))
    buffer.flush()
    if bar is not None:
        bar.close()
    _remove_stale_shards(split_dir, {s["name"] for s in buffer.written})
    seconds = time.perf_counter() - started
    stats = _split_stats(buffer.written, dtype, skipped, source, info, seconds)
    LOG.info(
        "%s: %d dialogues, %d turns, %d tokens in %d shards (%.1f s)",
        split, stats["dialogues"], stats["turns"], stats["tokens"], len(buffer.written), seconds,
    )
    return stats


def _progress_bar(enabled: bool, split: str) -> Any:
    if not enabled:
        return None
    return progress_bar(None, f"tokenising {split}", unit=" dialogues")


def _split_stats(
    shards: list[dict[str, Any]], dtype: np.dtype, skipped: int, source: str, info: dict[str, Any], seconds: float
) -> dict[str, Any]:
    return {
        "dialogues": sum(s["dialogues"] for s in shards),
        "turns": sum(s["turns"] for s in shards),
        "tokens": sum(s["tokens"] for s in shards),
        "skipped_empty_dialogues": skipped,
        "num_shards": len(shards),
        "token_dtype": dtype.name,
        "source": source,
        "shards": shards,
        "tokenizer_vocab_size": info["vocab_size"],
        "tokenizer": info,
        "seconds": round(seconds, 3),
    }


def write_manifest(
    out_dir: str | Path,
    tokenizer_dir_or_name: str | Path,
    splits_stats: dict[str, dict[str, Any]],
    sources: list[str],
) -> Path:
    """Write `out_dir/manifest.json` last, so readers only ever see complete shards."""
    from convssl import __version__

    out = Path(out_dir)
    infos = [s.get("tokenizer") for s in splits_stats.values() if s.get("tokenizer")]
    sizes = {i["vocab_size"] for i in infos}
    if len(sizes) > 1:
        raise ShardError(f"splits were tokenised with different vocabularies (sizes {sorted(sizes)})")
    manifest = {
        "format_version": FORMAT_VERSION,
        "convssl_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tokenizer": _tokenizer_entry(out, tokenizer_dir_or_name, infos[0] if infos else None),
        "sources": list(sources),
        "roles": list(ROLES),
        "splits": {
            name: {k: v for k, v in stats.items() if k != "tokenizer"} for name, stats in splits_stats.items()
        },
    }
    from convssl.runs import write_json_atomic

    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / MANIFEST, manifest)
    return out / MANIFEST


def _tokenizer_entry(out: Path, tokenizer: str | Path, info: dict[str, Any] | None) -> dict[str, Any]:
    """Store the path both absolute and relative to the shards, so the folder pair can move."""
    path = Path(tokenizer).expanduser()
    entry: dict[str, Any] = {"name": str(tokenizer)}
    if path.exists():
        entry["path"] = str(path.resolve())
        entry["relative_path"] = os.path.relpath(path.resolve(), out.resolve())
    if info is None and path.is_dir():
        from convssl.data.tokenizer import load_tokenizer, tokenizer_info

        info = tokenizer_info(load_tokenizer(path))
    entry["info"] = info
    return entry


# --------------------------------------------------------------------------------------------
# reading


def read_manifest(shards_dir: str | Path) -> dict[str, Any]:
    folder = Path(shards_dir)
    path = folder / MANIFEST
    if not path.exists():
        hint = "" if folder.exists() else " (the folder does not exist)"
        raise ShardsNotFound(
            f"no shard manifest {path}{hint}; write shards with `convssl prepare` first"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ShardError(f"{path}: not valid JSON: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("splits"), dict):
        raise ShardError(f"{path}: no 'splits' mapping; is this a convssl shard manifest?")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ShardError(
            f"{path}: shard format {manifest['format_version']} is newer than this convssl reads "
            f"({FORMAT_VERSION}); upgrade convssl"
        )
    for name, split in manifest["splits"].items():
        for i, entry in enumerate(split.get("shards", []) if isinstance(split, dict) else [None]):
            if not isinstance(entry, dict) or not SHARD_KEYS <= set(entry):
                raise ShardError(f"{path}: splits.{name}.shards[{i}] must have the keys {sorted(SHARD_KEYS)}")
    return manifest


def manifest_tokenizer_path(shards_dir: str | Path) -> Path | None:
    """The tokenizer folder the shards were written with, found even if both folders moved."""
    folder = Path(shards_dir)
    entry = read_manifest(folder).get("tokenizer", {})
    for candidate in (entry.get("relative_path"), entry.get("path")):
        if candidate:
            path = folder / candidate if not Path(candidate).is_absolute() else Path(candidate)
            if path.is_dir():
                return path.resolve()
    return None


class _OpenShard:
    """The memory-mapped arrays of one shard; only its touched pages are read."""

    def __init__(self, split_dir: Path, entry: dict[str, Any]) -> None:
        name = entry["name"]
        self.name = name
        try:
            self.tokens = np.load(split_dir / f"{name}.tokens.npy", mmap_mode="r")
            self.turns = np.load(split_dir / f"{name}.turns.npy", mmap_mode="r")
            self.dialogues = np.load(split_dir / f"{name}.dialogues.npy", mmap_mode="r")
            self.roles = np.load(split_dir / f"{name}.roles.npy", mmap_mode="r")
            self.ids = json.loads((split_dir / f"{name}.ids.json").read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ShardsNotFound(f"{split_dir}: shard {name} listed in the manifest is missing: {exc.filename}") from exc
        except ValueError as exc:
            raise ShardError(f"{split_dir}: shard {name} is unreadable: {exc}") from exc
        self._check(split_dir, entry)

    def _check(self, split_dir: Path, entry: dict[str, Any]) -> None:
        n_d, n_t, n_tok = entry["dialogues"], entry["turns"], entry["tokens"]
        found = (len(self.ids), len(self.dialogues) - 1, len(self.turns) - 1, len(self.roles), len(self.tokens))
        if found != (n_d, n_d, n_t, n_t, n_tok) or int(self.turns[-1]) != n_tok or int(self.dialogues[-1]) != n_t:
            raise ShardError(
                f"{split_dir}: shard {self.name} does not match the manifest "
                f"(manifest: {n_d} dialogues, {n_t} turns, {n_tok} tokens; files: ids={found[0]}, "
                f"dialogues={found[1]}, turns={found[2]}, roles={found[3]}, tokens={found[4]}); rewrite the shards"
            )

    def dialogue(self, index: int) -> TokenizedDialogue:
        t0, t1 = int(self.dialogues[index]), int(self.dialogues[index + 1])
        offsets = np.asarray(self.turns[t0 : t1 + 1], dtype=np.int64)
        flat = np.asarray(self.tokens[offsets[0] : offsets[-1]], dtype=np.int32)
        turns = np.split(flat, offsets[1:-1] - offsets[0])
        roles = [ROLES[c] for c in self.roles[t0:t1]]
        return TokenizedDialogue(id=self.ids[index], turns=turns, roles=roles)


class ShardReader:
    """Streams `TokenizedDialogue`s from one split, shuffled, partitioned and resumable.

    Order: each epoch permutes the shard order with `rng(seed, epoch)` and the dialogues inside
    each shard with `rng(seed, epoch, shard)`. The concatenation is the epoch's global order;
    rank `r` of `world_size` takes the global positions `r, r + world_size, r + 2*world_size, ...`
    (a round-robin deal), so ranks are disjoint, together cover the split, and differ in length by
    at most one. Every rank opens each shard in turn but reads only its own dialogues' pages.
    For DataLoader workers, deal again: `rank = rank * num_workers + worker_id`,
    `world_size = world_size * num_workers`.

    Iterating continues from the current position; when an epoch ends the reader moves to the
    next epoch (new order) and stops, or goes on if `loop=True`. `state_dict()` taken after any
    yielded dialogue resumes, in a fresh reader, at exactly the next one.
    """

    def __init__(
        self,
        shards_dir: str | Path,
        split: str = "train",
        *,
        shuffle: bool = True,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        loop: bool = False,
    ) -> None:
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.shards_dir = Path(shards_dir)
        self.split = split
        self.shuffle = shuffle
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.loop = loop
        self.manifest = read_manifest(self.shards_dir)
        self._entries = self._split_entries()
        self._counts = np.asarray([e["dialogues"] for e in self._entries], dtype=np.int64)
        self.total_dialogues = int(self._counts.sum())
        self.epoch = 0
        self._shard_pos = 0
        self._dialogue_pos = 0
        self._open: _OpenShard | None = None

    # -- manifest --------------------------------------------------------------------------

    def _split_entries(self) -> list[dict[str, Any]]:
        splits = self.manifest["splits"]
        if self.split not in splits:
            raise ShardsNotFound(
                f"{self.shards_dir / MANIFEST} has no split {self.split!r}; it has {sorted(splits)}"
            )
        entries = splits[self.split].get("shards") or []
        split_dir = self.shards_dir / self.split
        for entry in entries:
            for part in ARRAY_PARTS:
                if not (split_dir / f"{entry['name']}.{part}.npy").exists():
                    raise ShardsNotFound(
                        f"{split_dir}: shard file {entry['name']}.{part}.npy listed in the manifest is missing"
                    )
        return entries

    @property
    def tokenizer_path(self) -> Path | None:
        """The tokenizer folder named in the manifest (None if it is not on this machine)."""
        return manifest_tokenizer_path(self.shards_dir)

    @property
    def loaded_shards(self) -> list[str]:
        """Names of the shards held open now: never more than one."""
        return [self._open.name] if self._open is not None else []

    # -- order -----------------------------------------------------------------------------

    def _shard_order(self, epoch: int) -> np.ndarray:
        n = len(self._entries)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, epoch]).permutation(n)

    def _rank_indices(self, epoch: int, shard_pos: int, order: np.ndarray) -> np.ndarray:
        """This rank's dialogue indices inside the shard at `shard_pos` of the epoch's order."""
        shard = int(order[shard_pos])
        count = int(self._counts[shard])
        start = int(self._counts[order[:shard_pos]].sum())  # global position of the shard's first dialogue
        if self.shuffle:
            local = np.random.default_rng([self.seed, epoch, shard]).permutation(count)
        else:
            local = np.arange(count)
        first = (self.rank - start) % self.world_size
        return local[first :: self.world_size]

    def __len__(self) -> int:
        return max(0, (self.total_dialogues - self.rank + self.world_size - 1) // self.world_size)

    # -- iteration -------------------------------------------------------------------------

    def __iter__(self) -> Iterator[TokenizedDialogue]:
        if len(self) == 0:
            if self.loop:  # an endless reader with nothing to read would spin forever
                raise ShardError(
                    f"{self.shards_dir / self.split}: {self.total_dialogues} dialogues leave none for "
                    f"rank {self.rank} of {self.world_size}; cannot loop over an empty stream"
                )
            return
        split_dir = self.shards_dir / self.split
        while True:
            order = self._shard_order(self.epoch)
            while self._shard_pos < len(order):
                indices = self._rank_indices(self.epoch, self._shard_pos, order)
                if self._dialogue_pos < len(indices):
                    self._open = _OpenShard(split_dir, self._entries[int(order[self._shard_pos])])
                    while self._dialogue_pos < len(indices):
                        item = self._open.dialogue(int(indices[self._dialogue_pos]))
                        self._dialogue_pos += 1
                        yield item
                    self._open = None
                self._shard_pos += 1
                self._dialogue_pos = 0
            self.epoch += 1
            self._shard_pos = 0
            if not self.loop:
                return

    def set_epoch(self, epoch: int) -> None:
        """Start at the beginning of `epoch` (as DistributedSampler.set_epoch does)."""
        self.epoch, self._shard_pos, self._dialogue_pos = int(epoch), 0, 0

    # -- resumption ------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.epoch,
            "shard_position": self._shard_pos,
            "dialogue_position": self._dialogue_pos,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "rank": self.rank,
            "world_size": self.world_size,
            "split": self.split,
            "total_dialogues": self.total_dialogues,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at the dialogue after the one last yielded when `state` was taken."""
        for key in ("seed", "shuffle", "rank", "world_size", "split", "total_dialogues"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"reader state was saved with {key}={state[key]!r} but this reader has "
                    f"{key}={getattr(self, key)!r}; resuming would repeat or skip dialogues"
                )
        self.epoch = int(state["epoch"])
        self._shard_pos = int(state["shard_position"])
        self._dialogue_pos = int(state["dialogue_position"])
        self._open = None
