"""Deterministic train/validation/test assignment by dialogue id.

The split is a pure function of (seed, id): a dialogue keeps its split when more data arrives
or the corpus is re-curated, so a test dialogue can never drift into training, and all turns of
one dialogue always land together. blake2b is used because Python's ``hash()`` is salted per
process and would reshuffle the splits on every run.
"""

from __future__ import annotations

import hashlib
import math
import numbers
from collections.abc import Mapping
from types import MappingProxyType

# Read-only, so no caller can change every other caller's default.
DEFAULT_RATIOS: Mapping[str, float] = MappingProxyType({"train": 0.9, "validation": 0.05, "test": 0.05})


def validate_ratios(ratios: Mapping[str, float]) -> None:
    """Raise ValueError naming the bad split when ratios are not positive or do not sum to 1."""
    if not ratios:
        raise ValueError("split ratios are empty; give e.g. {'train': 0.9, 'validation': 0.05, 'test': 0.05}")
    for name, value in ratios.items():
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(f"split ratio for {name!r} must be a positive number, got {value!r}")
    total = math.fsum(ratios.values())
    if abs(total - 1.0) > 1e-6:
        shown = ", ".join(f"{k}={v}" for k, v in ratios.items())
        raise ValueError(f"split ratios must sum to 1, got {total:.6g} ({shown})")


def unit_hash(dialogue_id: str, seed: int = 0) -> float:
    """Stable position of an id in [0, 1): the top 53 bits of blake2b over the seed and the id.

    53 bits is what a float holds exactly, so the result can never round up to 1.0.
    """
    digest = hashlib.blake2b(f"{seed}\x1f{dialogue_id}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") >> 11) / 2.0**53


def assign_split(dialogue_id: str, ratios: Mapping[str, float] = DEFAULT_RATIOS, seed: int = 0) -> str:
    """The split whose cumulative ratio interval holds the id's hash (in the mapping's order)."""
    validate_ratios(ratios)
    position = unit_hash(dialogue_id, seed)
    cumulative = 0.0
    name = ""
    for name, ratio in ratios.items():
        cumulative += ratio
        if position < cumulative:
            return name
    return name  # rounding: the sum may be 1 - 1e-9 and the hash above it
