"""Curation filters: text repair, PII scrubbing, deduplication, language and quality gates.

All are pure functions (or small classes holding compiled state) over text and
``convssl.data.dialogue.Dialogue``; ``convssl prepare`` chains them and records every drop reason.
"""

from convssl.data.curate.dedup import (
    NearDuplicateIndex,
    dialogue_fingerprint,
    dialogue_text,
    exact_duplicates,
    fold_text,
    minhash_signatures,
    near_duplicates,
)
from convssl.data.curate.language import LanguageFilter, detect_language
from convssl.data.curate.pii import PII_TYPES, PLACEHOLDERS, PiiScrubber
from convssl.data.curate.quality import QUALITY_REASONS, QualityConfig, quality_reason, quality_reasons
from convssl.data.curate.text import normalize_text

__all__ = [
    "NearDuplicateIndex",
    "PII_TYPES",
    "PLACEHOLDERS",
    "QUALITY_REASONS",
    "LanguageFilter",
    "PiiScrubber",
    "QualityConfig",
    "detect_language",
    "dialogue_fingerprint",
    "dialogue_text",
    "exact_duplicates",
    "fold_text",
    "minhash_signatures",
    "near_duplicates",
    "normalize_text",
    "quality_reason",
    "quality_reasons",
]
