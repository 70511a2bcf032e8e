"""Perplexity of causal language models on held-out dialogues.

Each dialogue is one text (turns joined by the tokenizer's EOS token, or a newline), cut into
windows of `max_length` tokens; perplexity = exp(total NLL / predicted tokens) over all windows.
Perplexities are comparable only between models that share a tokenizer.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from convssl.data.dialogue import Dialogue
from convssl.models.reference import resolve_model_path
from convssl.utils.progress import progress_bar

CAUSAL_SUFFIXES = ("ForCausalLM", "LMHeadModel")


class NotCausalLM(ValueError):
    """The model folder holds an encoder (or seq2seq) model, which has no next-token perplexity."""


def check_causal(folder: Path) -> Any:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    archs = list(getattr(config, "architectures", None) or [])
    causal = bool(getattr(config, "is_decoder", False)) or any(a.endswith(CAUSAL_SUFFIXES) for a in archs)
    if not archs and not causal:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        encoders = {"bert", "roberta", "xlm-roberta", "distilbert", "electra", "deberta", "deberta-v2", "mpnet"}
        causal = config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and config.model_type not in encoders
    if not causal:
        raise NotCausalLM(
            f"{folder} is not a causal language model (model_type={config.model_type}, "
            f"architectures={archs or 'unset'}); perplexity needs a model that "
            "AutoModelForCausalLM loads as a decoder, e.g. a GPT-2 style convssl run"
        )
    return config


def load_causal_lm(path: str | Path, random_init: bool = False, seed: int = 0):
    """(model, tokenizer) from a local folder; `random_init` keeps the architecture, drops the weights."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model_path(path)
    config = check_causal(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    if random_init:
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True)
    return model.eval(), tokenizer


@torch.inference_mode()
def perplexity(model, tokenizer, dialogues: list[Dialogue], max_length: int = 512, batch_size: int = 8) -> dict[str, Any]:
    sep = tokenizer.eos_token or "\n"
    texts = [sep.join(t.text for t in d.turns) for d in dialogues]
    limit = min(max_length, int(getattr(model.config, "n_positions", None)
                                or getattr(model.config, "max_position_embeddings", max_length)))
    windows: list[list[int]] = []
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        windows.extend(ids[i : i + limit] for i in range(0, len(ids), limit) if len(ids[i : i + limit]) >= 2)
    windows.sort(key=len)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    total_nll, total_tokens = 0.0, 0
    bar = progress_bar(len(windows), "perplexity", unit="window", enabled=len(windows) >= 200)
    for start in range(0, len(windows), batch_size):
        batch = windows[start : start + batch_size]
        bar.update(len(batch))
        width = max(len(w) for w in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, w in enumerate(batch):
            ids[row, : len(w)] = torch.tensor(w)
            mask[row, : len(w)] = 1
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = ids[:, 1:]
        keep = mask[:, 1:].bool()
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none")
        total_nll += float(nll[keep.reshape(-1)].sum())
        total_tokens += int(keep.sum())
    bar.close()
    mean = total_nll / max(total_tokens, 1)
    return {"perplexity": math.exp(mean), "nll_per_token": mean, "tokens": total_tokens, "dialogues": len(dialogues),
            "windows": len(windows)}
