"""Pretext objectives: one module per objective behind the interface in `base.py`.

Importing this package registers every built-in objective; `get_objective(name)` finds them.
"""

from convssl.pretext import clm, contrastive, mlm, multitask, next_utterance  # noqa: F401  (registration)
from convssl.pretext.base import (
    Batch,
    ObjectiveConfig,
    ObjectiveError,
    PretextObjective,
    available_objectives,
    build_objective,
    get_objective,
    register_objective,
)

__all__ = [
    "Batch",
    "ObjectiveConfig",
    "ObjectiveError",
    "PretextObjective",
    "available_objectives",
    "build_objective",
    "get_objective",
    "register_objective",
]
