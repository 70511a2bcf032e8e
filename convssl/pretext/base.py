"""The contract between pretext objectives, models and the training loop.

An objective owns three things: how dialogues become batches, which heads it adds to the model
and how a batch becomes a loss. The loop only sees `Batch` objects and a scalar loss, so adding an
objective is adding one module that registers itself here.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import torch

from convssl.config import ConfigError
from convssl.data.special_tokens import SpecialIds, special_ids

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel


class DialogueLike(Protocol):
    """What objectives read from `convssl.data.shards.TokenizedDialogue`."""

    id: str
    turns: list[np.ndarray]
    roles: list[str]


class ObjectiveError(ConfigError):
    """An objective was configured or combined in a way that cannot work."""


# Settings every objective reads; the others belong to the objectives that declare them
# (`PretextObjective.settings`), and a config that gives one to another objective is refused.
COMMON_SETTINGS = ("name", "weight", "max_length")


@dataclass
class ObjectiveConfig:
    """Settings of one objective: the common ones and those of the objective `name` names.

    Giving a setting of another objective (`mask_rate` to `contrastive`) is an error rather than
    silently ignored, and a saved config holds only the settings that apply. `tasks` is only read
    by `multitask`: each entry is the full config of one sub-objective, whose `weight` scales its
    loss in the weighted sum.
    """

    name: str = "mlm"
    """Objective: mlm, clm, nup, contrastive, turn_views or multitask."""
    weight: float = 1.0
    """Weight of this objective's loss in the sum."""
    mask_rate: float = 0.15
    """mlm: share of tokens masked."""
    whole_word: bool = False
    """mlm: mask all pieces of a word together."""
    context_turns: int = 3
    """nup, contrastive: turns of context before the reply."""
    min_context_turns: int = 0
    """contrastive: if >= 1, each example's context keeps a random number of turns between this and
    `context_turns` (a bot that embeds only the user's last turn is then served too); 0: always `context_turns`."""
    max_length: int = 128
    """Tokens per row."""
    temperature: float = 0.05
    """contrastive, turn_views: softmax temperature of the similarities."""
    symmetric: bool = True
    """contrastive, turn_views: also rank in the other direction (replies for contexts and contexts for replies)."""
    hard_negatives: bool = False
    """contrastive: one extra negative per example from the same dialogue."""
    role_tokens: bool = True
    """contrastive: false feeds plain text ([CLS] turn turn turn [SEP], no role/[EOT] markers), the form
    `convssl evaluate`'s response selection and the serving response bank embed."""
    context_prompt: str = ""
    """contrastive (plain text): text put before every context (E5-style, e.g. "context: "). Saved with the
    model as its sentence-transformers "query" prompt, which evaluation and the response bank add."""
    response_prompt: str = ""
    """contrastive (plain text): text put before every reply; saved as the model's "document" prompt."""
    same_dialogue_negatives: float = 0.0
    """nup: share of negatives taken from the same dialogue."""
    view_drop: float = 0.3
    """turn_views: share of a turn's tokens each of its two views drops"""
    packing: bool = True
    """mlm, clm: fill rows with consecutive turns and dialogues."""
    tasks: list[ObjectiveConfig] = field(default_factory=list)
    """multitask: the sub-objectives, each a full objective config with its weight."""


    @classmethod
    def check_keys(cls, data: dict[str, Any], where: str) -> None:
        """Refuse settings that belong to another objective than the one named (called on load)."""
        name = str(data.get("name", cls.name))
        own = _settings_of(name)
        if own is None:
            return  # an unknown name: build_objective lists the known ones
        foreign = sorted(set(data) - set(COMMON_SETTINGS) - set(own))
        if foreign:
            users = {key: [n for n in available_objectives() if key in (_settings_of(n) or ())] for key in foreign}
            said = "; ".join(f"{key} is a setting of {', '.join(users[key]) or 'no objective'}" for key in foreign)
            raise ConfigError(f"{where}: objective {name} takes {', '.join([*COMMON_SETTINGS, *own])}, not "
                              f"{', '.join(foreign)} ({said})")

    def saved_fields(self) -> list[str]:
        """The fields written to a saved config: the common ones and this objective's own."""
        own = _settings_of(self.name)
        if own is None:
            return [f.name for f in dataclasses.fields(self)]
        return [*COMMON_SETTINGS, *own]


def without_foreign_settings(objective: dict[str, Any]) -> dict[str, Any]:
    """`objective` (a mapping, as read from YAML) without the settings of other objectives, in its
    sub-objectives too: run folders saved before settings were checked per objective list every
    setting in their config.yaml, and `--resume` must still continue them."""
    own = _settings_of(str(objective.get("name", ObjectiveConfig.name)))
    kept = dict(objective) if own is None else {k: v for k, v in objective.items()
                                               if k in COMMON_SETTINGS or k in own}
    if isinstance(kept.get("tasks"), list):
        kept["tasks"] = [without_foreign_settings(t) if isinstance(t, dict) else t for t in kept["tasks"]]
    return kept


def _settings_of(name: str) -> tuple[str, ...] | None:
    _load_builtin()
    objective = _REGISTRY.get(name)
    return None if objective is None else objective.settings


@dataclass
class Batch:
    """Tensors of one step; `real_tokens` counts non-pad tokens for honest throughput numbers."""

    tensors: dict[str, torch.Tensor]
    real_tokens: int
    objective: str
    parts: list[Batch] = field(default_factory=list)

    @classmethod
    def of_padded_rows(cls, tensors: dict[str, torch.Tensor], mask: np.ndarray, objective: str) -> Batch:
        """A batch of right-padded rows (`pad_rows`): real tokens counted from `mask`, which joins
        the tensors only when something is padded."""
        return cls(with_attention_mask(tensors, mask), real_tokens=int(mask.sum()), objective=objective)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        tensors = {k: v.to(device, non_blocking=non_blocking) for k, v in self.tensors.items()}
        parts = [p.to(device, non_blocking=non_blocking) for p in self.parts]
        return Batch(tensors, self.real_tokens, self.objective, parts)

    def pin_memory(self) -> Batch:
        """Pinned host memory lets `.to(cuda, non_blocking=True)` overlap with compute."""
        tensors = {k: v.pin_memory() for k, v in self.tensors.items()}
        return Batch(tensors, self.real_tokens, self.objective, [p.pin_memory() for p in self.parts])

    @property
    def size(self) -> int:
        """Number of examples (rows); used to weigh metrics when averaging over steps."""
        for value in self.tensors.values():
            return int(value.shape[0])
        return sum(p.size for p in self.parts)


def turn_segment(ids: SpecialIds, role: str, tokens: np.ndarray, max_tokens: int | None = None) -> np.ndarray:
    """`[ROLE] tokens [EOT]`, cutting the tokens (not the markers) to fit `max_tokens`."""
    body = np.asarray(tokens, dtype=np.int64)
    if max_tokens is not None and body.size + 2 > max_tokens:
        body = body[: max(0, max_tokens - 2)]
    out = np.empty(body.size + 2, dtype=np.int64)
    out[0] = ids.role(role)
    out[1:-1] = body
    out[-1] = ids.eot
    return out


def pad_rows(rows: list[np.ndarray], pad_id: int, length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad to the longest row (or `length`); returns ids and the 0/1 attention mask."""
    width = length or max(len(r) for r in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = row
        mask[i, : len(row)] = 1
    return ids, mask


def encoder_inputs(rows: list[np.ndarray], pad_id: int, prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors for an encoder; the mask is left out when nothing is padded, so attention skips it."""
    ids, mask = pad_rows(rows, pad_id)
    return with_attention_mask({f"{prefix}input_ids": torch.from_numpy(ids)}, mask, prefix)


def with_attention_mask(tensors: dict[str, torch.Tensor], mask: np.ndarray, prefix: str = "") -> dict[str, torch.Tensor]:
    """`tensors` plus the 0/1 attention mask, left out when nothing is padded so attention can skip it."""
    if not mask.all():
        tensors[f"{prefix}attention_mask"] = torch.from_numpy(mask)
    return tensors


class PretextObjective(ABC):
    """One self-supervised task: batching, heads and loss.

    `batches` must be deterministic given the dialogue order and the generator, so that a resumed
    run (same data position, same rng state) sees the same batches.
    """

    name: ClassVar[str]
    #: "encoder", "decoder" or "any": which backbone kinds the objective can train.
    needs: ClassVar[str] = "encoder"
    #: The `ObjectiveConfig` fields this objective reads besides `COMMON_SETTINGS`.
    settings: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ObjectiveConfig, tokenizer: Any) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.ids = special_ids(tokenizer)
        self.require(config.max_length >= 8, "max_length", ">= 8")

    def prompts(self) -> dict[str, str]:
        """Sentence-transformers prompts (name -> text put before an input) the trained model
        expects; saved with it. None by default."""
        return {}

    def require(self, ok: bool, setting: str, rule: str) -> None:
        """Refuse a setting, naming the objective, the setting, the rule and the value given."""
        if not ok:
            raise ObjectiveError(f"objective {self.name}: {setting} must be {rule}, got {getattr(self.config, setting)}")

    @abstractmethod
    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        """Turn a stream of tokenised dialogues into batches."""

    @abstractmethod
    def add_heads(self, model: PretextModel) -> None:
        """Add this objective's heads to `model.heads` (idempotent: resume calls it again)."""

    @abstractmethod
    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Scalar loss and float metrics (computed without gradients)."""

    def check_model(self, model: PretextModel) -> None:
        if self.needs == "encoder" and model.is_decoder:
            raise ObjectiveError(f"objective {self.name} needs an encoder (arch bert), got arch {model.arch}")
        if self.needs == "decoder" and not model.is_decoder:
            raise ObjectiveError(
                f"objective {self.name} needs a decoder (arch gpt2 or llama), got arch {model.arch}"
            )


_REGISTRY: dict[str, type[PretextObjective]] = {}


def register_objective(cls: type[PretextObjective]) -> type[PretextObjective]:
    """Class decorator: make an objective reachable by its `name` from configs."""
    name = getattr(cls, "name", None)
    if not name:
        raise TypeError(f"{cls.__name__} must set a class attribute `name`")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"objective name {name!r} is already registered by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def _load_builtin() -> None:
    # Importing the package imports every built-in objective module, which registers them.
    import convssl.pretext  # noqa: F401


def get_objective(name: str) -> type[PretextObjective]:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ObjectiveError(f"unknown objective {name!r}; available: {available_objectives()}") from None


def available_objectives() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def build_objective(config: ObjectiveConfig, tokenizer: Any) -> PretextObjective:
    """Instantiate the objective a config names."""
    return get_objective(config.name)(config, tokenizer)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.no_grad():
        if labels.numel() == 0:
            return 0.0
        return float((logits.argmax(-1) == labels).float().mean())
