"""Tune only the top transformer layers of an encoder, over cached lower-layer states.

Why: on a 2-core CPU a full fine-tuning step of all-MiniLM-L6-v2 costs about three forward
passes of every layer, so a pass over a pool of 10,000 pseudo-labelled utterances takes minutes.
The lower layers of a sentence encoder carry general lexical and syntactic features that a few
hundred labels should not move anyway (keeping them fixed is also the strongest possible anchor
to the geometry the encoder was trained for). So the frozen bottom runs once per text, its output
is cached, and every later epoch, re-embedding and self-training round runs only the top
`layers` blocks: with 2 of 6 layers tuned, an epoch over the pool costs about one frozen
embedding pass.

Works for BERT-style encoders whose `AutoModel` has `embeddings` and `encoder.layer` (BERT,
MiniLM, the convssl `mini`); other architectures raise a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from convssl.models.encoder import pool
from convssl.utils.compute import autocast


class UnsupportedEncoderError(ValueError):
    pass


def transformer_blocks(model: torch.nn.Module) -> torch.nn.ModuleList:
    """The encoder's list of transformer layers (BERT layout)."""
    blocks = getattr(getattr(model, "encoder", None), "layer", None)
    if not isinstance(blocks, torch.nn.ModuleList) or not hasattr(model, "embeddings"):
        raise UnsupportedEncoderError(
            f"{type(model).__name__} has no BERT-style embeddings + encoder.layer: the pool recipe tunes "
            "the top layers of a BERT-like encoder (MiniLM, BERT, convssl mini)")
    return blocks


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, T] 0/1 -> [B, 1, 1, T] additive mask, the form eager and SDPA attention both accept."""
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


@dataclass
class CachedStates:
    """Per text, the output of the frozen bottom (token states), kept in bf16 to halve memory."""

    states: list[torch.Tensor]

    def __len__(self) -> int:
        return len(self.states)

    def batch(self, rows: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """([B, T, dim] fp32 states padded with zeros, [B, T] 0/1 mask); one padding copy per
        batch (row-by-row copies were a tenth of a student step)."""
        chosen = [self.states[i] for i in rows]
        hidden = torch.nn.utils.rnn.pad_sequence(chosen, batch_first=True).float()
        lengths = torch.tensor([s.shape[0] for s in chosen])
        mask = (torch.arange(hidden.shape[1])[None, :] < lengths[:, None]).long()
        return hidden, mask


class TopLayerEncoder:
    """An encoder split at `len(layers) - top`: a frozen, cached bottom and a trainable top."""

    def __init__(self, model: torch.nn.Module, tokenizer, top: int, max_length: int, pooling: str = "mean",
                 bf16: bool = True) -> None:
        blocks = transformer_blocks(model)
        if not 1 <= top <= len(blocks):
            raise ValueError(f"top_layers: must be between 1 and {len(blocks)} for this encoder, got {top}")
        self.model = model
        self.tokenizer = tokenizer
        self.split = len(blocks) - top
        self.max_length = max_length
        self.pooling = pooling
        self.bf16 = bf16
        for p in model.parameters():
            p.requires_grad_(False)
        for p in self.top_parameters():
            p.requires_grad_(True)

    def top_blocks(self) -> list[torch.nn.Module]:
        return list(transformer_blocks(self.model))[self.split :]

    def top_parameters(self) -> list[torch.nn.Parameter]:
        return [p for block in self.top_blocks() for p in block.parameters()]

    def _autocast(self):
        return autocast(self.bf16)

    @torch.inference_mode()
    def cache(self, texts: Sequence[str], batch_size: int = 128, progress=None) -> CachedStates:
        """Run embeddings + the frozen bottom once per text (length-sorted batches)."""
        self.model.eval()
        blocks = transformer_blocks(self.model)
        order = np.argsort([len(t) for t in texts], kind="stable")
        states: list[torch.Tensor | None] = [None] * len(texts)
        for start in range(0, len(texts), batch_size):
            idx = order[start : start + batch_size]
            enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="pt")
            with self._autocast():
                hidden = self.model.embeddings(input_ids=enc["input_ids"],
                                               token_type_ids=enc.get("token_type_ids"))
                extended = additive_mask(enc["attention_mask"], hidden.dtype)
                for block in list(blocks)[: self.split]:
                    hidden = _block_output(block(hidden, extended))
            lengths = enc["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                states[i] = hidden[row, : lengths[row]].to(torch.bfloat16).clone()
            if progress is not None:
                progress.update(len(idx))
        return CachedStates(states)  # type: ignore[arg-type]

    def forward_top(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised pooled embeddings from cached bottom states (gradients flow into the top)."""
        with self._autocast():
            extended = additive_mask(mask, torch.float32)
            for block in self.top_blocks():
                hidden = _block_output(block(hidden, extended))
        return torch.nn.functional.normalize(pool(hidden.float(), mask, self.pooling), dim=-1)

    @torch.inference_mode()
    def embed(self, cached: CachedStates, batch_size: int = 256) -> np.ndarray:
        """Embeddings of every cached text through the current top."""
        self.model.eval()
        order = np.argsort([s.shape[0] for s in cached.states], kind="stable")
        out = np.zeros((len(cached), int(self.model.config.hidden_size)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            hidden, mask = cached.batch(idx)
            out[idx] = self.forward_top(hidden, mask).numpy()
        return out

    def top_state(self) -> dict[str, torch.Tensor]:
        return {f"{i}.{k}": v.detach().clone() for i, block in enumerate(self.top_blocks())
                for k, v in block.state_dict().items()}

    def load_top_state(self, state: dict[str, torch.Tensor]) -> None:
        for i, block in enumerate(self.top_blocks()):
            prefix = f"{i}."
            block.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _block_output(output) -> torch.Tensor:
    """A layer returns a tensor in transformers 5 and a tuple in 4.x."""
    return output[0] if isinstance(output, tuple) else output
