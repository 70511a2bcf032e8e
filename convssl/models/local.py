"""Open local Hugging Face model folders (never the Hub), safetensors only.

Continued pretraining starts from a folder such as the packaged MiniLM; resuming starts from a
convssl checkpoint. Both go through here so that a wrong path fails with one clear message
instead of a transformers stack trace or, worse, an attempt to reach the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from convssl.models.presets import ARCHS, DECODER_ARCHS
from convssl.models.reference import WEIGHT_FILE, WEIGHT_INDEX, ModelFolderError, check_model_folder

__all__ = ["load_backbone", "read_state_dict"]


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of a single or sharded safetensors checkpoint."""
    if (folder / WEIGHT_FILE).exists():
        return load_file(str(folder / WEIGHT_FILE))
    index = json.loads((folder / WEIGHT_INDEX).read_text(encoding="utf-8"))
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(set(index["weight_map"].values())):
        state.update(load_file(str(folder / shard)))
    return state


def arch_of(hf_config: Any) -> str:
    model_type = getattr(hf_config, "model_type", "")
    if model_type in ARCHS:
        return model_type
    raise ModelFolderError(
        f"model type {model_type!r} is not supported for pretraining; supported: {list(ARCHS)}"
    )


def split_bert_state(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Backbone tensors (prefix `bert.` removed) and the `cls.*` MLM head tensors, if any."""
    backbone: dict[str, torch.Tensor] = {}
    head: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("cls."):
            head[key[len("cls.") :]] = value
            continue
        key = key[len("bert.") :] if key.startswith("bert.") else key
        if key.startswith("pooler.") or key == "embeddings.position_ids":
            continue
        backbone[key] = value
    return backbone, head


def load_backbone(folder: str | Path, attention: str = "eager") -> tuple[Any, str, dict[str, torch.Tensor]]:
    """(backbone, arch, MLM head tensors) from a local folder, offline.

    BERT-type folders load into a pooler-less `BertModel`: the pretext objectives never use the
    pooler, and unused parameters would break DistributedDataParallel.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, BertModel

    folder = check_model_folder(folder)
    try:
        cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # transformers raises many types; name the folder once
        raise ModelFolderError(f"cannot read the model config in {folder}: {exc}") from exc
    arch = arch_of(cfg)
    cfg._attn_implementation = attention
    if arch in DECODER_ARCHS:
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), local_files_only=True, attn_implementation=attention, dtype=torch.float32
        )
        return model, arch, {}
    model = BertModel(cfg, add_pooling_layer=False)
    backbone_state, head_state = split_bert_state(read_state_dict(folder))
    missing, _ = model.load_state_dict(backbone_state, strict=False)
    missing = [k for k in missing if k != "embeddings.position_ids"]
    if missing:
        raise ModelFolderError(
            f"{folder}/{WEIGHT_FILE} lacks backbone weights {missing[:5]} (+{max(0, len(missing) - 5)} more)"
        )
    return model, arch, head_state
