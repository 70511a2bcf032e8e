"""Contrastive response selection (ConveRT, TOD-BERT): pull a context towards its reply.

One shared encoder embeds the context (last k turns with role tokens, or plain text, optionally
after a context prompt such as "context: ") and the reply (the next turn, optionally after a reply
prompt); mean-pooled, L2-normalised embeddings are scored by cosine / temperature against every
reply in the batch, and, under torch.distributed, against the replies of every rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from convssl.pretext.base import (
    Batch,
    DialogueLike,
    PretextObjective,
    encoder_inputs,
    register_objective,
)
from convssl.pretext.batching import (
    context_row,
    dialogue_segments,
    grouped,
    response_key,
    shuffled,
    windows,
    with_role,
)

if TYPE_CHECKING:
    from convssl.models.pretext_model import PretextModel

WINDOW = 64  # dialogues read before their examples are shuffled together
SHUFFLE_BATCHES = 8  # shuffle buffer, in batches: spreads one dialogue's examples apart


def plain_text(segment: np.ndarray) -> np.ndarray:
    """A `[ROLE] text [EOT]` segment without its markers."""
    return segment[1:-1]


def prompt_ids(tokenizer: Any, prompt: str) -> np.ndarray:
    """The prompt's token ids without special tokens: `[CLS] prompt text [SEP]` is then what the
    tokenizer makes of `prompt + text` at evaluation (prompts end in a space or a colon)."""
    if not prompt:
        return np.zeros(0, dtype=np.int64)
    return np.asarray(tokenizer(prompt, add_special_tokens=False)["input_ids"], dtype=np.int64)


def text_key(segment: np.ndarray, role_tokens: bool) -> int:
    """`response_key` for marked segments; plain ones carry no role token to skip."""
    return response_key(segment) if role_tokens else response_key(np.concatenate([[0], segment]))


def gather_across_ranks(x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """All ranks' rows (differentiable) and this rank's index; identity without distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        world = torch.distributed.get_world_size()
        if world > 1:
            from torch.distributed.nn.functional import all_gather

            return torch.cat(all_gather(x.contiguous()), dim=0), torch.distributed.get_rank()
    return x, 0


def pooled_embedding(model: PretextModel, batch: Batch, prefix: str) -> torch.Tensor:
    """Mean-pooled, L2-normalised encoder output of the batch's `{prefix}input_ids` rows."""
    t = batch.tensors
    mask = t.get(f"{prefix}attention_mask")
    hidden = model.encode(t[f"{prefix}input_ids"], mask)
    return F.normalize(model.mean_pool(hidden, mask).float(), dim=-1)


def mask_repeated_texts(
    logits: torch.Tensor, keys: torch.Tensor, all_keys: torch.Tensor, targets: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits with -inf where a candidate repeats the row's own text, that mask): the same text
    twice in a batch ("ok", "how are you?") is not a negative of itself. Keys below 0 (hard
    negatives) never match; each row's target stays."""
    repeated = (all_keys[None, :] == keys[:, None]) & (all_keys[None, :] >= 0)
    repeated[torch.arange(keys.shape[0], device=logits.device), targets] = False
    return logits.masked_fill(repeated, float("-inf")), repeated


@register_objective
class ContrastiveResponse(PretextObjective):
    name = "contrastive"
    needs = "any"
    settings = ("context_turns", "min_context_turns", "temperature", "symmetric", "hard_negatives", "role_tokens",
                "context_prompt", "response_prompt")

    def __init__(self, config, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.require(config.temperature > 0, "temperature", "> 0")
        self.require(config.context_turns >= 1, "context_turns", ">= 1")
        self.require(0 <= config.min_context_turns <= config.context_turns, "min_context_turns",
                     f"between 0 and context_turns ({config.context_turns})")
        has_prompts = bool(config.context_prompt or config.response_prompt)
        self.require(not (has_prompts and config.role_tokens), "role_tokens",
                     "false when context_prompt or response_prompt is set (prompts are plain text)")
        self.context_prefix = prompt_ids(tokenizer, config.context_prompt)
        self.response_prefix = prompt_ids(tokenizer, config.response_prompt)
        self.require(len(self.context_prefix) + 8 <= config.max_length, "max_length",
                     f">= 8 tokens more than the context prompt's {len(self.context_prefix)}")
        self.require(len(self.response_prefix) + 8 <= config.max_length, "max_length",
                     f">= 8 tokens more than the response prompt's {len(self.response_prefix)}")

    def prompts(self) -> dict[str, str]:
        """The sentence-transformers prompts a model trained by this objective expects: "query" for
        contexts, "document" for replies (what `encode_query` / `encode_document` apply)."""
        named = {"query": self.config.context_prompt, "document": self.config.response_prompt}
        return {name: text for name, text in named.items() if text}

    def context_size(self, rng: np.random.Generator) -> int:
        """Turns of context for one example: `context_turns`, or a random count from
        `min_context_turns` up. Why: trained on 3-turn contexts only, the encoder learns to match a
        reply to the same speaker's previous turn, and with the one turn a bot sees it ranks
        replies below the untrained MiniLM (held-out SGD recall@1/100 5.5 vs 9.0)."""
        low = self.config.min_context_turns
        return int(rng.integers(low, self.config.context_turns + 1)) if low else self.config.context_turns

    def pairs(
        self, dialogues: Iterator[DialogueLike], rng: np.random.Generator
    ) -> Iterator[tuple[np.ndarray, ...]]:
        """(context row, response row, hard-negative row or None, response key) per turn i >= 1."""
        length = self.config.max_length
        bos, eos = np.array([self.ids.bos]), np.array([self.ids.eos])
        reply_room = length - 2 - len(self.response_prefix)  # the reply's tokens after [CLS] and its prompt
        context_room = length - 2 - len(self.context_prefix)
        for group in windows(dialogues, WINDOW):
            for dialogue in group:
                segs = dialogue_segments(dialogue, self.ids, length - 2)
                if not self.config.role_tokens:
                    segs = [plain_text(seg) for seg in segs]
                for i in range(1, len(segs)):
                    if not len(segs[i]):
                        continue
                    k = self.context_size(rng)
                    context = context_row(segs[max(0, i - k) : i], self.ids, context_room, self.config.role_tokens)
                    context = np.concatenate([bos, self.context_prefix, context[1:]])
                    response = np.concatenate([bos, self.response_prefix, segs[i][:reply_room], eos])
                    hard = None
                    if self.config.hard_negatives:
                        j = int(rng.integers(len(segs) - 1))
                        other = segs[j if j < i else j + 1]
                        other = with_role(other, segs[i][0]) if self.config.role_tokens else other
                        hard = np.concatenate([bos, self.response_prefix, other[:reply_room], eos])
                    yield context, response, hard, text_key(segs[i], self.config.role_tokens)

    def batches(
        self, dialogues: Iterator[DialogueLike], batch_size: int, rng: np.random.Generator
    ) -> Iterator[Batch]:
        """Full batches only (all ranks must gather equal shapes); a lone partial batch is kept
        so that tiny data sets still train."""
        examples = shuffled(self.pairs(dialogues, rng), SHUFFLE_BATCHES * batch_size, rng)
        yielded = False
        for group in grouped(examples, batch_size):
            if len(group) < batch_size and yielded:
                return
            yielded = True
            yield self.make_batch(group)

    def make_batch(self, group: list[tuple]) -> Batch:
        pad = self.ids.pad
        tensors = {
            **encoder_inputs([g[0] for g in group], pad, "context_"),
            **encoder_inputs([g[1] for g in group], pad, "response_"),
            "response_keys": torch.tensor([g[3] for g in group], dtype=torch.long),
        }
        real = sum(len(g[0]) + len(g[1]) for g in group)
        if self.config.hard_negatives:
            tensors.update(encoder_inputs([g[2] for g in group], pad, "negative_"))
            real += sum(len(g[2]) for g in group)
        return Batch(tensors, real_tokens=real, objective=self.name)

    def add_heads(self, model: PretextModel) -> None:
        self.check_model(model)  # shared encoder, no head: the embeddings are the product

    def embed(self, model: PretextModel, batch: Batch, prefix: str) -> torch.Tensor:
        return pooled_embedding(model, batch, prefix)

    def loss(self, model: PretextModel, batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        t = batch.tensors
        context = self.embed(model, batch, "context_")
        responses = self.embed(model, batch, "response_")
        keys = t["response_keys"]
        n = context.shape[0]
        pool = (
            torch.cat([responses, self.embed(model, batch, "negative_")])
            if "negative_input_ids" in t
            else responses
        )
        pool_keys = torch.cat([keys, keys.new_full((n,), -1)]) if pool.shape[0] > n else keys
        all_pool, rank = gather_across_ranks(pool)
        all_keys, _ = gather_across_ranks(pool_keys)
        targets = torch.arange(n, device=context.device) + rank * pool.shape[0]
        logits, _ = mask_repeated_texts(context @ all_pool.T / self.config.temperature, keys, all_keys, targets)
        loss = F.cross_entropy(logits, targets)
        if self.config.symmetric:
            all_context, _ = gather_across_ranks(context)
            back = responses @ all_context.T / self.config.temperature
            loss = (loss + F.cross_entropy(back, torch.arange(n, device=context.device) + rank * n)) / 2
        with torch.no_grad():
            recall = float((logits.argmax(-1) == targets).float().mean())
        return loss, {"loss": float(loss.detach()), "recall@1": recall}
