"""Exact and near-duplicate detection for dialogues, linear in the number of dialogues.

Chat logs repeat: bots send templates, users paste the same complaint, scrapers collect one thread
twice. Duplicates inflate some patterns and leak between train and test, so they are dropped
before splitting. Exact duplicates are found by hashing a folded text (case, punctuation and
whitespace do not count); near duplicates by MinHash signatures of character n-grams and
locality-sensitive hashing (LSH), which only ever compares dialogues that share a band of their
signature, so the cost grows with the number of dialogues, never with its square.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from convssl.data.dialogue import Dialogue

_FOLD_RE = re.compile(r"[\W_]+")
# numpy 2 renamed trapz; the package supports numpy >= 1.26.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz
# Characters (~ shingles) per block while building signatures: large enough that numpy's per-call
# overhead vanishes, small enough that the temporaries stay in cache and memory stays flat.
_BLOCK_SHINGLES = 1 << 19
# ASCII fast path of fold_text as one byte table: letters lower-cased, digits kept, all else a space.
_ASCII_FOLD = bytes(c if chr(c).isalnum() else 32 for c in range(128)).lower() + bytes(range(128, 256))


def fold_bytes(text: str) -> bytes:
    """UTF-8 bytes of ``fold_text(text)``; a byte-table translation when the text is ASCII.

    Text made only of punctuation or emoji would fold to nothing and make "😂" equal "👍", so it
    keeps its symbols (case-folded, spacing collapsed) instead.
    """
    if text.isascii():
        folded = b" ".join(text.encode("ascii").translate(_ASCII_FOLD).split())
    else:
        folded = " ".join(_FOLD_RE.sub(" ", text.casefold()).split()).encode("utf-8")
    if not folded:
        return " ".join(text.casefold().split()).encode("utf-8")
    return folded


def fold_text(text: str) -> str:
    """Case, punctuation and spacing differences do not make two texts different for dedup."""
    return fold_bytes(text).decode("utf-8")


def dialogue_text(dialogue: Dialogue) -> str:
    """All turns in order as one string, the unit that language and near-duplicate checks judge."""
    return " ".join(turn.text for turn in dialogue.turns)


def dialogue_fingerprint(dialogue: Dialogue) -> str:
    """Hex digest of the folded turns; speakers and roles are ignored so relabelled copies match."""
    folded = b"\n".join(fold_bytes(turn.text) for turn in dialogue.turns)
    return hashlib.blake2b(folded, digest_size=16).hexdigest()


def exact_duplicates(dialogues: Sequence[Dialogue]) -> list[int]:
    """Indices to drop: every dialogue whose fingerprint was already seen earlier in the list."""
    seen: set[str] = set()
    drop: list[int] = []
    for index, dialogue in enumerate(dialogues):
        fingerprint = dialogue_fingerprint(dialogue)
        if fingerprint in seen:
            drop.append(index)
        else:
            seen.add(fingerprint)
    return drop


@lru_cache(maxsize=64)
def lsh_params(
    threshold: float, num_perm: int, fp_weight: float = 0.1, fn_weight: float = 0.9
) -> tuple[int, int]:
    """(bands, rows) whose S-curve best separates pairs above and below ``threshold``.

    Misses cost more than extra candidates (every candidate is verified against its signature),
    so false negatives weigh nine times as much as false positives: at threshold 0.8 with
    128 permutations this picks 14 bands of 9 rows, which finds 87% of pairs at similarity 0.8 and
    97.5% at 0.85, while a pair at 0.5 becomes a candidate 2.7% of the time.
    """
    best: tuple[float, int, int] | None = None
    below = np.linspace(0.0, threshold, 201)
    above = np.linspace(threshold, 1.0, 201)
    for bands in range(1, num_perm + 1):
        for rows in range(1, num_perm // bands + 1):
            fp = _trapezoid(1.0 - (1.0 - below**rows) ** bands, below)
            fn = _trapezoid((1.0 - above**rows) ** bands, above)
            error = fp_weight * fp + fn_weight * fn
            if best is None or error < best[0]:
                best = (error, bands, rows)
    assert best is not None
    return best[1], best[2]


def _shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every UTF-8 byte n-gram of every folded text, and each text's first index.

    A text shorter than ``ngram`` is padded so it still has one shingle (its whole self).
    """
    padded = [fold_bytes(text).ljust(ngram, b"\0") for text in texts]
    lengths = np.fromiter((len(b) for b in padded), dtype=np.int64, count=len(padded))
    buffer = np.frombuffer(b"".join(padded), dtype=np.uint8).astype(np.uint64)
    windows = len(buffer) - ngram + 1
    rolled = np.zeros(windows, dtype=np.uint64)
    if ngram <= 8:  # exact: the n bytes packed side by side
        for k in range(ngram):
            rolled |= buffer[k : k + windows] << np.uint64(8 * k)
    else:  # polynomial hash, wrapping modulo 2**64
        base = np.uint64(0x100000001B3)
        for k in range(ngram):
            rolled *= base
            rolled += buffer[k : k + windows]
    counts = lengths - ngram + 1
    text_starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    shingle_starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    # Windows that do not cross into the next text: text start + offset within the text.
    positions = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(text_starts - shingle_starts, counts)
    return _mix64(rolled[positions]), shingle_starts


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: spreads structured byte packs over all 64 bits."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def minhash_signatures(
    texts: Sequence[str], num_perm: int = 128, ngram: int = 5, seed: int = 0
) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures over character n-gram shingles.

    Each "permutation" is a multiply-add hash mod 2**64 whose top 32 bits are kept; since the shift
    is monotonic the minimum is taken on the full 64-bit value and shifted once per text. Texts
    are processed in blocks of about ``_BLOCK_SHINGLES`` shingles, so memory stays flat however
    large the corpus is.
    """
    if ngram < 1 or num_perm < 1:
        raise ValueError(f"ngram and num_perm must be positive, got ngram={ngram}, num_perm={num_perm}")
    signatures = np.empty((len(texts), num_perm), dtype=np.uint32)
    rng = np.random.default_rng(seed)
    mul = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    add = rng.integers(0, 2**63, size=num_perm, dtype=np.uint64)
    lo = 0
    while lo < len(texts):
        hi, budget = lo, 0
        while hi < len(texts) and (budget < _BLOCK_SHINGLES or hi == lo):
            budget += len(texts[hi]) + 1
            hi += 1
        shingles, starts = _shingle_hashes(texts[lo:hi], ngram)
        scratch = np.empty_like(shingles)
        for p in range(num_perm):
            np.multiply(shingles, mul[p], out=scratch)
            scratch += add[p]
            signatures[lo:hi, p] = np.minimum.reduceat(scratch, starts) >> np.uint64(32)
        lo = hi
    return signatures


def _band_keys(band: np.ndarray) -> np.ndarray:
    """One 64-bit key per row of a band; collisions only add candidates that verification drops."""
    key = np.full(band.shape[0], 0x9E3779B97F4A7C15, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for column in band.T:
            key ^= column.astype(np.uint64)
            key *= np.uint64(0x100000001B3)
            key ^= key >> np.uint64(29)
    return key


def candidate_pairs(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(k, 2) int64 index pairs (i < j) that share at least one LSH band.

    Within a bucket every member is paired with the bucket's first member and with its neighbour,
    so a bucket of m texts gives under 2m pairs instead of m²/2, and union-find still joins the
    whole bucket when its members are verified similar.
    """
    n = signatures.shape[0]
    found: list[np.ndarray] = []
    for b in range(bands):
        keys = _band_keys(signatures[:, b * rows : (b + 1) * rows])
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        same_as_prev = np.empty(n, dtype=bool)
        same_as_prev[0] = False
        same_as_prev[1:] = sorted_keys[1:] == sorted_keys[:-1]
        if not same_as_prev.any():
            continue
        run_id = np.cumsum(~same_as_prev) - 1
        run_first = order[np.flatnonzero(~same_as_prev)][run_id]
        members = np.flatnonzero(same_as_prev)
        found.append(np.stack([run_first[members], order[members]], axis=1))
        found.append(np.stack([order[members - 1], order[members]], axis=1))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    pairs = np.concatenate(found).astype(np.int64)
    pairs.sort(axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    codes = np.unique(pairs[:, 0] * n + pairs[:, 1])
    return np.stack([codes // n, codes % n], axis=1)


def estimated_jaccard(signatures: np.ndarray, pairs: np.ndarray, chunk: int = 1 << 16) -> np.ndarray:
    """Fraction of agreeing signature slots per pair: an unbiased estimate of Jaccard similarity."""
    out = np.empty(len(pairs), dtype=np.float64)
    for lo in range(0, len(pairs), chunk):
        part = pairs[lo : lo + chunk]
        out[lo : lo + chunk] = (signatures[part[:, 0]] == signatures[part[:, 1]]).mean(axis=1)
    return out


def _cluster_roots(n: int, pairs: np.ndarray) -> np.ndarray:
    """Union-find where the smallest index is always the root, so each cluster keeps its first."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs.tolist():
        ri, rj = find(i), find(j)
        if ri != rj:
            if ri < rj:
                parent[rj] = ri
            else:
                parent[ri] = rj
    return np.fromiter((find(i) for i in range(n)), dtype=np.int64, count=n)


def near_duplicates(
    texts: Sequence[str], threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 0
) -> list[int]:
    """Indices to drop: all but the first text of each cluster of near-duplicates.

    Two texts are near duplicates when the MinHash estimate of the Jaccard similarity of their
    character ``ngram`` sets is at least ``threshold``; clusters are the connected components of
    that relation, so a chain of small edits collapses to its first text.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if len(texts) < 2:
        return []
    signatures = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, seed=seed)
    bands, rows = lsh_params(round(threshold, 6), num_perm)
    pairs = candidate_pairs(signatures, bands, rows)
    if len(pairs) == 0:
        return []
    similar = pairs[estimated_jaccard(signatures, pairs) >= threshold - 1e-12]
    if len(similar) == 0:
        return []
    roots = _cluster_roots(len(texts), similar)
    return np.flatnonzero(roots != np.arange(len(texts))).tolist()


class NearDuplicateIndex:
    """Near-duplicate detection against a corpus that grows batch by batch.

    Use it when new logs arrive after a corpus was curated: ``add`` drops the new texts that
    repeat indexed ones (or each other) and indexes the rest, so the result equals running
    ``near_duplicates`` over everything seen so far without recomputing old signatures. Each
    LSH bucket remembers up to ``bucket_cap`` indexed texts, which bounds the work per lookup.
    """

    def __init__(
        self, threshold: float = 0.8, num_perm: int = 128, ngram: int = 5, seed: int = 0, bucket_cap: int = 8
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {threshold}")
        self.threshold, self.num_perm, self.ngram, self.seed = threshold, num_perm, ngram, seed
        self.bucket_cap = bucket_cap
        self.bands, self.rows = lsh_params(round(threshold, 6), num_perm)
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(self.bands)]
        self._signatures = np.empty((0, num_perm), dtype=np.uint32)

    def __len__(self) -> int:
        return len(self._signatures)

    def _keys(self, signatures: np.ndarray) -> list[list[int]]:
        return [
            _band_keys(signatures[:, b * self.rows : (b + 1) * self.rows]).tolist() for b in range(self.bands)
        ]

    def _indexed_matches(self, signatures: np.ndarray, keys: list[list[int]]) -> list[set[int]]:
        """Per text, the indexed ids whose signature agrees on at least ``threshold`` of the slots."""
        matches: list[set[int]] = [set() for _ in range(len(signatures))]
        for b, bucket in enumerate(self._buckets):
            for i, key in enumerate(keys[b]):
                matches[i].update(bucket.get(key, ()))
        for i, ids in enumerate(matches):
            if ids:
                candidates = np.fromiter(ids, dtype=np.int64, count=len(ids))
                agree = (self._signatures[candidates] == signatures[i]).mean(axis=1)
                matches[i] = set(candidates[agree >= self.threshold - 1e-12].tolist())
        return matches

    def query(self, text: str) -> list[int]:
        """Ids (in order of ``add``, kept texts only) of indexed texts that ``text`` nearly repeats."""
        signatures = minhash_signatures([text], self.num_perm, self.ngram, self.seed)
        return sorted(self._indexed_matches(signatures, self._keys(signatures))[0])

    def add(self, texts: Sequence[str]) -> list[int]:
        """Positions in ``texts`` dropped as near-duplicates; the other texts get the next ids."""
        if not texts:
            return []
        signatures = minhash_signatures(texts, self.num_perm, self.ngram, self.seed)
        keys = self._keys(signatures)
        hits = self._indexed_matches(signatures, keys)
        pairs = candidate_pairs(signatures, self.bands, self.rows)
        similar = (
            pairs[estimated_jaccard(signatures, pairs) >= self.threshold - 1e-12] if len(pairs) else pairs
        )
        roots = _cluster_roots(len(texts), similar)
        # A batch cluster that touches the index is dropped whole: its first text is a repeat too.
        repeated_roots = {int(roots[i]) for i, ids in enumerate(hits) if ids}
        drop = [i for i in range(len(texts)) if roots[i] != i or int(roots[i]) in repeated_roots]
        dropped = set(drop)
        kept = [i for i in range(len(texts)) if i not in dropped]
        first_id = len(self._signatures)
        for b, bucket in enumerate(self._buckets):
            band_keys = keys[b]
            for offset, i in enumerate(kept):
                members = bucket.setdefault(band_keys[i], [])
                if len(members) < self.bucket_cap:
                    members.append(first_id + offset)
        self._signatures = np.concatenate([self._signatures, signatures[kept]])
        return drop
