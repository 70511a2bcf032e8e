"""Pretext objectives: one module per objective behind the interface in `base.py`.

Importing this package registers every built-in objective; `get_objective(name)` finds them.
"""

from convssl.pretext import (  # noqa: F401  (registration)
    clm,
    contrastive,
    mlm,
    multitask,
    next_utterance,
    turn_views,
)
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
