"""`convssl prepare`: read, curate, split, report, tokenise and shard a conversational corpus.

Each stage counts what it received, what it removed and why, and how long it took, so the report
can prove that read = kept + removed-per-reason and show where the time goes. Dialogues are
split by a hash of their id, after deduplication, so no dialogue (or a copy of it) can sit in
two splits, and adding data never moves an existing dialogue to another split.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from convssl.data.config import PrepareConfig, SplitConfig, TextConfig
from convssl.data.curate import (
    LanguageFilter,
    PiiScrubber,
    dialogue_text,
    exact_duplicates,
    near_duplicates,
    normalize_text,
    quality_reasons,
)
from convssl.data.dialogue import Dialogue, IntentExample
from convssl.data.readers import ReadResult, read_inputs
from convssl.data.rejects import REJECT_REASONS, RejectLog
from convssl.data.report import corpus_arrays, corpus_stats, write_report
from convssl.data.splits import assign_split, unit_hash
from convssl.utils.progress import progress_bar

LOG = logging.getLogger("convssl.prepare")

# ------------------------------------------------------------------------------------------
# helpers


def _turns(dialogues: Sequence[Dialogue]) -> int:
    return sum(len(d.turns) for d in dialogues)


def _bar(enabled: bool, total: int, desc: str) -> Any:
    return progress_bar(total, desc, unit=" dialogues", enabled=enabled)


class _FilteredLog:
    """Writes one line per dialogue a filter removed (`DIR/filtered.jsonl`), for audits."""

    def __init__(self, path: Path) -> None:
        self._fh: IO[str] = path.open("w", encoding="utf-8")

    def write(self, dialogue: Dialogue, stage: str, reason: str, **extra: Any) -> None:
        self.write_entry({"id": dialogue.id, "source": dialogue.source, "stage": stage, "reason": reason, **extra})

    def write_entry(self, entry: dict[str, Any]) -> None:
        self._fh.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._fh.close()


class _Run:
    """State of one prepare run: timings, stage records and the filtered-dialogue log."""

    def __init__(self, out: Path, progress: bool) -> None:
        self.out = out
        self.progress = progress
        self.timings: dict[str, float] = {}
        # CPU seconds of this process (all threads): comparable across runs on a busy machine.
        self.cpu_timings: dict[str, float] = {}
        self.stages: list[dict[str, Any]] = []
        self.filtered = _FilteredLog(out / "filtered.jsonl")

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start, cpu = time.perf_counter(), time.process_time()
        LOG.info("stage %s ...", name)
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        self.cpu_timings[name] = round(time.process_time() - cpu, 3)

    def record(
        self, name: str, before: Sequence[Dialogue], after: Sequence[Dialogue], removed: Counter[str], **extra: Any
    ) -> None:
        seconds = self.timings.get(name, 0.0)
        turns_in = _turns(before)
        entry = {
            "stage": name,
            "dialogues_in": len(before),
            "dialogues_out": len(after),
            "turns_in": turns_in,
            "turns_out": _turns(after),
            "removed": dict(sorted(removed.items(), key=lambda kv: -kv[1])),
            "seconds": seconds,
            "cpu_seconds": self.cpu_timings.get(name, 0.0),
            "turns_per_second": round(turns_in / seconds) if seconds > 0 else None,
            **extra,
        }
        self.stages.append(entry)
        LOG.info("%s: %d -> %d dialogues %s (%.2f s)", name, len(before), len(after), entry["removed"] or "", seconds)

    def drop(
        self, name: str, dialogues: list[Dialogue], reasons: Iterable[str | None], **extra: Any
    ) -> list[Dialogue]:
        """Keep dialogues whose reason is None; log and count the others."""
        kept: list[Dialogue] = []
        removed: Counter[str] = Counter()
        by_source: dict[str, Counter[str]] = {}
        for dialogue, reason in zip(dialogues, reasons, strict=True):
            if reason is None:
                kept.append(dialogue)
            else:
                removed[reason] += 1
                by_source.setdefault(reason, Counter())[dialogue.source] += 1
                self.filtered.write(dialogue, name, reason)
        removed_by_source = {reason: dict(c.most_common()) for reason, c in by_source.items()}
        self.record(name, dialogues, kept, removed, removed_by_source=removed_by_source, **extra)
        return kept


# ------------------------------------------------------------------------------------------
# stages


def unique_ids(dialogues: list[Dialogue]) -> int:
    """Give clashing ids (same id in two inputs) a `#n` suffix; the split hashes ids, so they must differ."""
    seen: set[str] = set()
    renamed = 0
    for dialogue in dialogues:
        if dialogue.id in seen:
            base, n = dialogue.id, 2
            while f"{base}#{n}" in seen:
                n += 1
            dialogue.meta = {**dialogue.meta, "original_id": base}
            dialogue.id = f"{base}#{n}"
            renamed += 1
        seen.add(dialogue.id)
    return renamed


def _normalize(run: _Run, dialogues: list[Dialogue], cfg: TextConfig) -> None:
    changed = 0
    with run.timed("normalize"):
        bar = _bar(run.progress, len(dialogues), "normalize")
        for dialogue in dialogues:
            for turn in dialogue.turns:
                new = normalize_text(turn.text, fix_unicode=cfg.fix_unicode, form=cfg.form, lowercase=cfg.lowercase)
                if new != turn.text:
                    changed += 1
                    turn.text = new
            bar.update(1)
        bar.close()
    run.record("normalize", dialogues, dialogues, Counter(), changed_turns=changed)


def _scrub(run: _Run, dialogues: list[Dialogue], scrubber: PiiScrubber) -> Counter[str]:
    found: Counter[str] = Counter()
    changed = 0
    with run.timed("pii"):
        bar = _bar(run.progress, len(dialogues), "pii")
        for dialogue in dialogues:
            for turn in dialogue.turns:
                text, counts = scrubber.scrub(turn.text)
                if counts:
                    found.update(counts)
                    changed += 1
                    turn.text = text
            bar.update(1)
        bar.close()
    run.record("pii", dialogues, dialogues, Counter(), changed_turns=changed, replaced=dict(found))
    return found


def _with_bar(run: _Run, items: Sequence[Any], desc: str, fn: Callable[[Any], str | None]) -> list[str | None]:
    bar = _bar(run.progress, len(items), desc)
    out = []
    for item in items:
        out.append(fn(item))
        bar.update(1)
    bar.close()
    return out


def curate(run: _Run, dialogues: list[Dialogue], config: PrepareConfig) -> tuple[list[Dialogue], Counter[str]]:
    """Run the configured curation stages in order; returns the kept dialogues and PII counts."""
    pii: Counter[str] = Counter()
    for stage in config.stages:
        if stage == "normalize":
            _normalize(run, dialogues, config.text)
        elif stage == "pii":
            pii = _scrub(run, dialogues, PiiScrubber(config.pii.types))
        elif stage == "quality":
            with run.timed(stage):  # vectorised over all dialogues: faster than a per-dialogue bar
                reasons = quality_reasons(dialogues, config.quality)
            dialogues = run.drop(stage, dialogues, reasons)
        elif stage == "language":
            lf = LanguageFilter(config.language.keep, config.language.min_confidence, config.language.min_chars)
            with run.timed(stage):
                reasons = _with_bar(run, dialogues, stage, lf.reason)
            dialogues = run.drop(stage, dialogues, reasons)
        elif stage == "exact_dedup" and config.dedup.exact:
            with run.timed(stage):
                drop = set(exact_duplicates(dialogues))
            dialogues = run.drop(stage, dialogues, ["exact_duplicate" if i in drop else None for i in range(len(dialogues))])
        elif stage == "near_dedup" and config.dedup.near:
            d = config.dedup
            with run.timed(stage):
                drop = set(near_duplicates([dialogue_text(x) for x in dialogues], d.threshold, d.num_perm, d.ngram, d.seed))
            dialogues = run.drop(stage, dialogues, ["near_duplicate" if i in drop else None for i in range(len(dialogues))],
                                 threshold=d.threshold)
    return dialogues, pii


def split_dialogues(dialogues: Iterable[Dialogue], cfg: SplitConfig) -> dict[str, list[Dialogue]]:
    splits: dict[str, list[Dialogue]] = {name: [] for name in cfg.ratios}
    for dialogue in dialogues:
        splits[assign_split(dialogue.id, cfg.ratios, cfg.seed)].append(dialogue)
    return splits


def curate_intents(
    run: _Run, intents: list[IntentExample], config: PrepareConfig
) -> tuple[list[IntentExample], Counter[str], Counter[str]]:
    """Normalise and scrub intent examples; they keep their given split and are not deduplicated."""
    scrubber = PiiScrubber(config.pii.types) if "pii" in config.stages else None
    kept: list[IntentExample] = []
    removed: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    with run.timed("intents"):
        for example in intents:
            text = example.text
            if "normalize" in config.stages:
                t = config.text
                text = normalize_text(text, fix_unicode=t.fix_unicode, form=t.form, lowercase=t.lowercase)
            if scrubber is not None:
                text, counts = scrubber.scrub(text)
                pii.update(counts)
            if not text.strip():
                removed["empty_text"] += 1
                run.filtered.write_entry({"text": example.text, "label": example.label, "source": example.source,
                                          "split": example.split, "stage": "intents", "reason": "empty_text"})
                continue
            example.text = text
            kept.append(example)
    return kept, removed, pii


def write_jsonl(path: Path, records: Iterable[Any]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record.to_dict(), ensure_ascii=False) + "\n")
            count += 1
    return count


def _remove_stale(folder: Path, splits: set[str]) -> None:
    """A rerun into the same folder must not leave an old split file that would be read back."""
    for path in folder.glob("*.jsonl"):
        if path.stem not in splits:
            path.unlink()


def _split_summary(dialogues: Sequence[Dialogue]) -> dict[str, Any]:
    return {
        "dialogues": len(dialogues),
        "turns": _turns(dialogues),
        "by_source": dict(Counter(d.source for d in dialogues).most_common()),
    }


def _intent_summary(examples: Sequence[IntentExample]) -> dict[str, Any]:
    return {
        "examples": len(examples),
        "labels": len({e.label for e in examples}),
        "by_source": dict(Counter(e.source for e in examples).most_common()),
    }


def shard_order(dialogues: Sequence[Dialogue], seed: int = 0) -> list[Dialogue]:
    """Dialogues sorted by a seeded hash of their id: a fixed order that interleaves all sources.

    Input order puts one source after another, so with many shards each shard would hold one
    source and a reader that shuffles shard by shard would feed long single-source stretches.
    The salt keeps this order independent of the split assignment, which hashes the same ids.
    """
    return sorted(dialogues, key=lambda d: unit_hash(f"shard-order\x1f{d.id}", seed))


def describe_reasons(config: PrepareConfig, reasons: Iterable[str]) -> dict[str, str]:
    """One sentence per reason code seen in this run, with this run's thresholds, for report.md."""
    q, lang, d = config.quality, config.language, config.dedup
    known = {
        **REJECT_REASONS,
        "too_few_turns": f"fewer than {q.min_turns} turns (quality.min_turns). A turn is the run of consecutive "
                         "messages by one speaker, so a conversation that only one person wrote in has 1 turn",
        "too_many_turns": f"more than {q.max_turns} turns (quality.max_turns)",
        "empty_turn": (f"a turn with fewer than {q.min_tokens_per_turn} words" if q.min_tokens_per_turn > 1
                       else "a turn without any word") + " (quality.min_tokens_per_turn)",
        "turn_too_long": f"a turn with more than {q.max_tokens_per_turn} words (quality.max_tokens_per_turn)",
        "repeated_char_spam": f"more than {q.max_spam_turn_ratio:.0%} of the turns, and at least two, repeat a "
                              f"1-4 character unit more than {q.max_char_repeat} times in a row "
                              "(quality.max_char_repeat, quality.max_spam_turn_ratio)",
        "non_letter_ratio": f"more than {q.max_spam_turn_ratio:.0%} of the turns, and at least two, are over "
                            f"{q.max_nonletter_ratio:.0%} digits, punctuation or emoji (quality.max_nonletter_ratio)",
        "exact_duplicate": "the same turns as an earlier dialogue once case, punctuation and spacing are ignored",
        "near_duplicate": f"MinHash-estimated Jaccard similarity >= {d.threshold} with an earlier dialogue, over "
                          f"character {d.ngram}-grams (dedup.threshold)",
        "empty_text": "an intent example whose text was empty after normalisation and PII scrubbing",
    }
    out: dict[str, str] = {}
    for reason in reasons:
        if reason in known:
            out[reason] = known[reason]
        elif reason.startswith("language:"):
            out[reason] = (f"confidently (probability >= {lang.min_confidence}) in language "
                           f"'{reason.split(':', 1)[1]}', which is not in language.keep {list(lang.keep)}")
    return out


def tokenize_and_shard(
    run: _Run, splits: dict[str, list[Dialogue]], cfg: PrepareConfig, sources: list[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train (or reuse) the tokenizer, then write shards and the manifest for every split."""
    from convssl.data.shards import write_manifest, write_shards
    from convssl.data.tokenizer import load_tokenizer, tokenizer_info, train_tokenizer

    tok_dir = run.out / "tokenizer"
    t = cfg.tokenizer
    with run.timed("tokenizer"):
        if t.path:
            tokenizer = load_tokenizer(t.path)
            if tok_dir.exists():
                shutil.rmtree(tok_dir)
            tokenizer.save_pretrained(str(tok_dir))
            trained = False
        else:
            train = splits.get("train", [])
            if not train:
                raise ValueError("no dialogues in the train split to train a tokenizer on; "
                                 "pass --tokenizer PATH or --no-tokenize")
            texts = (turn.text for d in train for turn in d.turns)
            train_tokenizer(texts, tok_dir, kind=t.kind, vocab_size=t.vocab_size, min_frequency=t.min_frequency,
                            lowercase=t.lowercase, length=_turns(train))
            trained = True
        tokenizer = load_tokenizer(tok_dir)
    info = {**tokenizer_info(tokenizer), "path": str(tok_dir), "trained": trained, "source": t.path or "train split"}
    stats: dict[str, Any] = {}
    with run.timed("shards"):
        for name, dialogues in splits.items():
            if cfg.shards.mix:
                dialogues = shard_order(dialogues, cfg.shards.seed)
            stats[name] = write_shards(dialogues, tokenizer, run.out / "shards", name, cfg.shards.shard_tokens,
                                       cfg.shards.batch_size, source=",".join(sources), progress=run.progress)
        write_manifest(run.out / "shards", tok_dir, stats, sources)
    summary = {name: {"dialogues": s["dialogues"], "turns": s["turns"], "tokens": s["tokens"],
                      "shards": len(s["shards"]), "seconds": s["seconds"]} for name, s in stats.items()}
    return info, summary


# ------------------------------------------------------------------------------------------
# the run


def run_prepare(config: PrepareConfig, out_dir: str | Path, progress: bool = True) -> dict[str, Any]:
    """Run the whole pipeline into `out_dir` and return the report (also written as report.json)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    run = _Run(out, progress)
    try:
        with RejectLog(out / "rejects.jsonl", strict=config.inputs.strict) as rejects:
            with run.timed("read"):
                result = _read(run, config, rejects)
            report = _curate_and_write(run, config, result, rejects, started, cpu_started)
    finally:
        run.filtered.close()
    return report


def _set_timings(report: dict[str, Any], run: _Run, started: float, cpu_started: float) -> None:
    report["timings"] = {**run.timings, "total": round(time.perf_counter() - started, 3)}
    report["cpu_timings"] = {**run.cpu_timings, "total": round(time.process_time() - cpu_started, 3)}


def _read(run: _Run, config: PrepareConfig, rejects: RejectLog) -> ReadResult:
    bar = progress_bar(None, "read", unit=" records", enabled=run.progress)
    result = read_inputs(config.inputs.paths or None, format=config.inputs.format, strict=config.inputs.strict,
                         rejects=rejects, limit=config.inputs.limit, max_line_bytes=config.inputs.max_line_bytes,
                         progress=lambda _name, n: bar.update(n))
    bar.close()
    return result


def _curate_and_write(
    run: _Run, config: PrepareConfig, result: ReadResult, rejects: RejectLog, started: float, cpu_started: float
) -> dict[str, Any]:
    out = run.out
    dialogues = result.dialogues
    renamed = unique_ids(dialogues)
    read_stage = {"stage": "read", "dialogues_in": len(dialogues), "dialogues_out": len(dialogues),
                  "turns_in": _turns(dialogues), "turns_out": _turns(dialogues), "removed": {},
                  "seconds": run.timings["read"], "cpu_seconds": run.cpu_timings["read"],
                  "renamed_duplicate_ids": renamed,
                  "turns_per_second": round(_turns(dialogues) / run.timings["read"]) if run.timings["read"] else None}
    run.stages.append(read_stage)
    kept, pii = curate(run, dialogues, config)
    with run.timed("split"):
        splits = split_dialogues(kept, config.split)
    intents, intents_removed, intents_pii = curate_intents(run, result.intents, config)
    with run.timed("write"):
        _remove_stale(out / "dialogues", set(splits))
        for name, items in splits.items():
            write_jsonl(out / "dialogues" / f"{name}.jsonl", items)
        intent_splits: dict[str, list[IntentExample]] = {}
        for example in intents:
            intent_splits.setdefault(example.split, []).append(example)
        _remove_stale(out / "intents", set(intent_splits))
        for name, items in intent_splits.items():
            write_jsonl(out / "intents" / f"{name}.jsonl", items)
    sources = [s["input"] for s in result.sources]
    report: dict[str, Any] = {
        "out_dir": str(out),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "inputs": result.sources,
        "counts": {
            "records_read": len(result.dialogues) + len(result.intents) + rejects.total,
            "dialogues_read": len(result.dialogues),
            "intents_read": len(result.intents),
            "rejected": rejects.total,
            "dialogues_removed": len(result.dialogues) - len(kept),
            "dialogues_kept": len(kept),
            "turns_read": read_stage["turns_in"],
            "turns_kept": _turns(kept),
            "intents_removed": sum(intents_removed.values()),
            "intents_kept": len(intents),
            "renamed_duplicate_ids": renamed,
        },
        "rejects": dict(rejects.counts.most_common()),
        "stages": run.stages,
        "pii": dict((pii + intents_pii).most_common()),
        "pii_dialogues": dict(pii.most_common()),
        "pii_intents": dict(intents_pii.most_common()),
        "splits": {name: _split_summary(items) for name, items in splits.items()},
        "intents": {name: _intent_summary(items) for name, items in sorted(intent_splits.items())},
        "intents_removed": dict(intents_removed),
        "config_file": "config.yaml",
    }
    seen_reasons = [*rejects.counts, *(r for st in run.stages for r in st["removed"]), *intents_removed]
    report["reasons"] = describe_reasons(config, dict.fromkeys(seen_reasons))
    if config.tokenizer.enabled and kept:
        report["tokenizer"], report["shards"] = tokenize_and_shard(run, splits, config, sources)
    elif config.tokenizer.enabled:
        report["tokenizer_skipped"] = "no dialogues were kept, so there is nothing to train a tokenizer on or shard"
    else:
        report["tokenizer_skipped"] = "turned off (--no-tokenize / tokenizer.enabled=false)"
    with run.timed("report"):
        arrays = corpus_arrays(kept)
        report["stats"] = corpus_stats(arrays)
        _set_timings(report, run, started, cpu_started)
        write_report(report, out, arrays if config.plots else None)
    _set_timings(report, run, started, cpu_started)
    write_report(report, out, None)
    return report
