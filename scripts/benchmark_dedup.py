"""Benchmark near-duplicate detection on 100k real chit-chat windows with injected near copies.

Builds texts of ``--words`` consecutive words (spanning several turns) of the chitchat corpus,
windows starting every ``--stride`` words so they are not near-duplicates by construction,
replaces a share of them with small edits of earlier texts (change, drop, repeat a word, change
punctuation or case), runs ``near_duplicates`` and prints the time, throughput, peak memory and
the recall of the injected copies.

    OMP_NUM_THREADS=1 python scripts/benchmark_dedup.py            # 100k texts, as in docs/curation.md
    python scripts/benchmark_dedup.py --texts 20000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from pathlib import Path

from convssl.data.curate.dedup import (
    exact_duplicates,
    fold_bytes,
    fold_text,
    lsh_params,
    minhash_signatures,
    near_duplicates,
)
from convssl.data.dialogue import Dialogue, Turn


def chitchat_turns() -> list[list[str]]:
    """Each conversation as its list of turns (a turn joins one sender's consecutive messages)."""
    import chitchat_dataset

    path = Path(chitchat_dataset.__file__).parent / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    return [[" ".join(m["text"] for m in turn) for turn in conv["messages"]] for conv in data.values()]


def windows(conversations: list[list[str]], words: int, stride: int) -> list[str]:
    """Texts of ``words`` consecutive words of one conversation, starting every ``stride`` words.

    Each window spans several turns. With 40 words and a stride of 20, neighbouring windows share
    half their words (a character 5-gram Jaccard similarity near 1/3), far below a near-duplicate
    threshold of 0.8, so the only near-duplicates are the injected ones and real repeats.
    """
    out = []
    for turns in conversations:
        stream = " ".join(turns).split()
        for start in range(0, len(stream) - words + 1, stride):
            out.append(" ".join(stream[start : start + words]))
    return out


def build_corpus(
    n: int, words: int, inject: float, seed: int, edits: int = 1, stride: int = 20
) -> tuple[list[str], dict[int, int]]:
    """``n`` texts; ``inject * n`` of them are edited copies of earlier ones (copy index -> source)."""
    conversations = chitchat_turns()
    pool: list[str] = []
    seen: set[str] = set()
    for text in windows(conversations, words, stride):
        key = fold_text(text)
        if key not in seen:
            seen.add(key)
            pool.append(text)
    rng = random.Random(seed)
    rng.shuffle(pool)
    n_copies = int(n * inject)
    texts = pool[: n - n_copies]
    if len(texts) < n - n_copies:
        sys.exit(f"the corpus gives only {len(pool)} windows; ask for fewer --texts")
    injected: dict[int, int] = {}
    for _ in range(n_copies):
        position = rng.randrange(1, len(texts) + 1)
        source = rng.randrange(position)
        copy = texts[source]
        for _ in range(edits):
            copy = edit(copy, rng)
        texts.insert(position, copy)
        # Insertion shifts later indices; remap the bookkeeping.
        injected = {
            (c + 1 if c >= position else c): (s + 1 if s >= position else s) for c, s in injected.items()
        }
        injected[position] = source
    return texts, injected


def edit(text: str, rng: random.Random) -> str:
    """One small human-like edit."""
    words = text.split()
    i = rng.randrange(len(words))
    action = rng.choice(["replace", "drop", "repeat", "punct", "case"])
    if action == "replace":
        words[i] = rng.choice(["yeah", "really", "cool", "okay", "so"])
    elif action == "drop" and len(words) > 1:
        del words[i]
    elif action == "repeat":
        words.insert(i, words[i])
    elif action == "punct":
        words[i] += rng.choice(["!", "?", "...", ","])
    else:
        words[i] = words[i].upper()
    return " ".join(words)


def true_jaccard(a: str, b: str, ngram: int) -> float:
    """Exact Jaccard similarity of the byte n-gram sets that near_duplicates estimates."""
    x, y = fold_bytes(a), fold_bytes(b)
    sx = {x[i : i + ngram] for i in range(max(1, len(x) - ngram + 1))}
    sy = {y[i : i + ngram] for i in range(max(1, len(y) - ngram + 1))}
    return len(sx & sy) / len(sx | sy)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=40, help="approximate words per text")
    parser.add_argument("--inject", type=float, default=0.02, help="share of texts that are edited copies")
    parser.add_argument("--stride", type=int, default=20, help="least words between window starts")
    parser.add_argument("--edits", type=int, default=1, help="small edits applied to each injected copy")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--num-perm", type=int, default=128)
    parser.add_argument("--ngram", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    texts, injected = build_corpus(args.texts, args.words, args.inject, args.seed, args.edits, args.stride)
    build_s = time.perf_counter() - start
    rss_before = peak_rss_mib()
    avg_words = sum(len(t.split()) for t in texts) / len(texts)
    print(
        f"built {len(texts):,} texts (avg {avg_words:.1f} words, {len(injected):,} injected copies) in {build_s:.1f} s"
    )

    start = time.perf_counter()
    minhash_signatures(texts, num_perm=args.num_perm, ngram=args.ngram, seed=args.seed)
    sig_s = time.perf_counter() - start  # the share of near_duplicates spent on signatures

    start = time.perf_counter()
    dropped = near_duplicates(texts, args.threshold, args.num_perm, args.ngram, args.seed)
    near_s = time.perf_counter() - start
    rss_after = peak_rss_mib()

    dialogues = [
        Dialogue(id=str(i), turns=[Turn(speaker="A", role="A", text=t)]) for i, t in enumerate(texts)
    ]
    start = time.perf_counter()
    exact = exact_duplicates(dialogues)
    exact_s = time.perf_counter() - start

    dropped_set = set(dropped)
    found = sum(1 for copy in injected if copy in dropped_set)
    # Recall among copies whose exact similarity to their source really reaches the threshold.
    similar = [
        c for c, src in injected.items() if true_jaccard(texts[c], texts[src], args.ngram) >= args.threshold
    ]
    found_similar = sum(1 for copy in similar if copy in dropped_set)
    bands, rows = lsh_params(args.threshold, args.num_perm)
    results = {
        "texts": len(texts),
        "avg_words": round(avg_words, 1),
        "threshold": args.threshold,
        "num_perm": args.num_perm,
        "ngram": args.ngram,
        "bands": bands,
        "rows": rows,
        "near_seconds": round(near_s, 2),
        "near_dialogues_per_s": round(len(texts) / near_s),
        "signature_seconds": round(sig_s, 2),
        "exact_seconds": round(exact_s, 2),
        "peak_rss_mib_before": round(rss_before),
        "peak_rss_mib_after": round(rss_after),
        "injected": len(injected),
        "edits_per_copy": args.edits,
        "injected_found": found,
        "recall": round(found / max(1, len(injected)), 4),
        "injected_above_threshold": len(similar),
        "recall_above_threshold": round(found_similar / max(1, len(similar)), 4),
        "dropped_total": len(dropped),
        "dropped_not_injected": len(dropped_set - set(injected)),
        "exact_duplicates": len(exact),
    }
    print(
        f"near_duplicates: {near_s:.2f} s for {len(texts):,} texts = {len(texts) / near_s:,.0f} dialogues/s "
        f"(signatures alone {sig_s:.2f} s; {bands} bands x {rows} rows)\n"
        f"exact_duplicates: {exact_s:.2f} s\n"
        f"peak RSS: {rss_before:.0f} MiB after building the corpus, {rss_after:.0f} MiB after dedup\n"
        f"recall of injected near-duplicates ({args.edits} edit(s) each): {found}/{len(injected)} = {results['recall']:.4f}; "
        f"of the {len(similar):,} copies whose exact similarity is >= {args.threshold}: "
        f"{results['recall_above_threshold']:.4f}\n"
        f"dropped {len(dropped):,} in total, {results['dropped_not_injected']:,} of them natural near-duplicates "
        f"in the corpus; {len(exact):,} exact duplicates"
    )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
