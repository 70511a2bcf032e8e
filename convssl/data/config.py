"""Settings of `convssl prepare`: what to read, how to curate, split, tokenise and shard.

One dataclass per stage, gathered in `PrepareConfig`; `convssl prepare --help` lists every key
with the description written below it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal, get_args

from convssl.config import Range, check_values
from convssl.data.curate import PII_TYPES, QualityConfig
from convssl.data.readers import FORMATS
from convssl.data.readers._common import DEFAULT_MAX_LINE_BYTES
from convssl.data.splits import DEFAULT_RATIOS, validate_ratios

Stage = Literal["normalize", "pii", "quality", "language", "exact_dedup", "near_dedup"]
CURATION_STAGES = get_args(Stage)


@dataclass
class InputsConfig:
    """What to read and how strictly."""

    paths: list[str] = field(default_factory=list)
    """Files or folders; empty means the chitchat corpus from the `chitchat-dataset` package."""
    format: str | None = None
    """One of FORMATS, or None to detect per file."""
    strict: bool = False
    """Stop at the first malformed record instead of logging it to rejects.jsonl."""
    limit: int | None = None
    """Read at most this many records per input (quick trials); None reads everything."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """Longest line the line formats accept, in bytes; a longer line is rejected as line_too_long."""


@dataclass
class TextConfig:
    """Text normalisation."""

    fix_unicode: bool = True
    """Repair mojibake and broken Unicode with ftfy."""
    form: str = "NFKC"
    """Unicode normal form applied to every turn (NFKC, NFC, NFKD or NFD)."""
    lowercase: bool = False
    """Lowercase every turn."""


@dataclass
class PiiConfig:
    """PII scrubbing."""

    types: list[str] = field(default_factory=lambda: list(PII_TYPES))
    """PII kinds replaced by placeholders such as [EMAIL] (URL, EMAIL, IBAN, CARD, SSN, IP, PHONE)."""


@dataclass
class DedupConfig:
    """Exact and near-duplicate removal."""

    exact: bool = True
    """Drop dialogues whose normalised text repeats another's exactly."""
    near: bool = True
    """Drop near duplicates found with MinHash LSH."""
    threshold: Annotated[float, Range("(0, 1]")] = 0.8
    """Jaccard similarity of word n-grams above which two dialogues are near duplicates."""
    num_perm: int = 128
    """MinHash permutations: more is more exact and slower."""
    ngram: int = 5
    """Words per shingle of the near-duplicate comparison."""
    seed: int = 0
    """Seed of the MinHash permutations."""


@dataclass
class LanguageConfig:
    """Language filter."""

    keep: list[str] = field(default_factory=lambda: ["en"])
    """Language codes to keep (py3langid); an empty list keeps every language."""
    min_confidence: float = 0.5
    """Dialogues identified with less confidence than this are kept as they are."""
    min_chars: int = 20
    """Dialogues with fewer characters than this are not judged (too short to tell)."""


@dataclass
class SplitConfig:
    """Train/validation/test split by dialogue."""

    train: float = DEFAULT_RATIOS["train"]
    """Shares of dialogues per split (by a hash of the id); 0 leaves a split out."""
    validation: float = DEFAULT_RATIOS["validation"]
    """Share of dialogues in the validation split."""
    test: float = DEFAULT_RATIOS["test"]
    """Share of dialogues in the test split."""
    seed: int = 0
    """Seed of the hash that assigns a dialogue to its split."""

    @property
    def ratios(self) -> dict[str, float]:
        return {name: r for name, r in (("train", self.train), ("validation", self.validation), ("test", self.test)) if r}


@dataclass
class TokenizerConfig:
    """The tokenizer trained (or reused) for the shards."""

    enabled: bool = True
    """False skips the tokenizer and the shards (`--no-tokenize`)."""
    path: str | None = None
    """Reuse this local tokenizer or model folder instead of training one."""
    kind: Literal["wordpiece", "bpe"] = "wordpiece"
    """wordpiece (BERT-style) or bpe (byte-level, GPT-2-style)."""
    vocab_size: int = 16000
    """Target vocabulary size, special tokens included."""
    min_frequency: int = 2
    """Minimum count of a word piece or merge."""
    lowercase: bool = False
    """Lowercase before tokenising (WordPiece then also strips accents, as uncased BERT)."""


@dataclass
class ShardConfig:
    """Memory-mapped token shards."""

    shard_tokens: int = 8_000_000
    """Tokens per shard file; whole dialogues only, never split across shards."""
    batch_size: int = 2048
    """Dialogues tokenised per call of the Rust tokenizer."""
    mix: bool = True
    """Write each split in a seeded hash order of dialogue ids instead of input order, so every shard is a random sample of all sources and the reader's shard-by-shard shuffle mixes them."""
    seed: int = 0
    """Seed of the mixed order (shards.mix)."""


@dataclass
class PrepareConfig:
    inputs: InputsConfig = field(default_factory=InputsConfig)
    stages: list[Stage] = field(default_factory=lambda: list(CURATION_STAGES))
    """Curation stages to run, in this order; remove one to skip it."""
    text: TextConfig = field(default_factory=TextConfig)
    pii: PiiConfig = field(default_factory=PiiConfig)
    quality: QualityConfig = field(default_factory=QualityConfig)
    language: LanguageConfig = field(default_factory=LanguageConfig)
    dedup: DedupConfig = field(default_factory=DedupConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    plots: bool = True
    """Write the report's plots (DIR/plots/*.png)."""

    def __post_init__(self) -> None:
        if self.inputs.format is not None and self.inputs.format not in FORMATS:
            raise ValueError(f"inputs.format: {self.inputs.format!r} is not one of {list(FORMATS)}")
        validate_ratios(self.split.ratios)
        unknown_pii = sorted({t.upper() for t in self.pii.types} - set(PII_TYPES))
        if unknown_pii:
            raise ValueError(f"pii.types: unknown type(s) {unknown_pii}; choose from {list(PII_TYPES)}")
        check_values(self)  # ranges and choices are on the fields
