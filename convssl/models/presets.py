"""Model sizes as YAML presets, turned into Hugging Face configs.

Sizes live in `convssl/configs/models/*.yaml` so that a new size is a new file, and the same
preset gives an encoder (BERT) or a decoder (GPT-2, Llama) of matching shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
SIZE_KEYS = ("num_layers", "hidden_size", "num_heads", "intermediate_size")
ENCODER_ARCHS = ("bert",)
DECODER_ARCHS = ("gpt2", "llama")
ARCHS = ENCODER_ARCHS + DECODER_ARCHS
ATTENTIONS = ("eager", "sdpa")


class ModelConfigError(ValueError):
    """A model preset, architecture or override is invalid."""


@dataclass
class ModelConfig:
    """Which network to pretrain.

    `init_from` names a local Hugging Face folder to continue pretraining (its architecture and
    size win over `preset`/`arch`); `overrides` changes preset sizes (`num_layers`, `hidden_size`,
    `num_heads`, `intermediate_size`) or sets any other field of the Hugging Face config.
    """

    preset: str = "mini"
    arch: str = "bert"
    init_from: str | None = None
    dropout: float = 0.1
    attention: str = "eager"
    max_position: int = 512
    overrides: dict[str, Any] = field(default_factory=dict)


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name: str) -> dict[str, int]:
    """The four size numbers of a preset (a name in configs/models or a YAML path)."""
    path = Path(name)
    if not path.suffix:
        path = PRESET_DIR / f"{name}.yaml"
    if not path.exists():
        raise ModelConfigError(f"unknown model preset {name!r}; available: {available_presets()}")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [k for k in SIZE_KEYS if k not in data]
    unknown = sorted(set(data) - set(SIZE_KEYS))
    if missing or unknown:
        raise ModelConfigError(
            f"{path}: preset needs exactly {list(SIZE_KEYS)}; missing {missing}, unknown {unknown}"
        )
    return {k: int(data[k]) for k in SIZE_KEYS}


def resolved_sizes(config: ModelConfig) -> tuple[dict[str, int], dict[str, Any]]:
    """Preset sizes with size overrides applied, plus the remaining (Hugging Face) overrides."""
    sizes = load_preset(config.preset)
    extra: dict[str, Any] = {}
    for key, value in config.overrides.items():
        if key in SIZE_KEYS:
            sizes[key] = int(value)
        else:
            extra[key] = value
    if sizes["hidden_size"] % sizes["num_heads"]:
        raise ModelConfigError(
            f"hidden_size {sizes['hidden_size']} is not divisible by num_heads {sizes['num_heads']}"
        )
    return sizes, extra


def validate(config: ModelConfig) -> None:
    if config.arch not in ARCHS:
        raise ModelConfigError(f"model.arch must be one of {list(ARCHS)}, got {config.arch!r}")
    if config.attention not in ATTENTIONS:
        raise ModelConfigError(f"model.attention must be one of {list(ATTENTIONS)}, got {config.attention!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ModelConfigError(f"model.dropout must be in [0, 1), got {config.dropout}")


def hf_config(config: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> Any:
    """A transformers config for training from scratch."""
    validate(config)
    sizes, extra = resolved_sizes(config)
    layers, hidden, heads, ffn = (sizes[k] for k in SIZE_KEYS)
    if config.arch == "bert":
        from transformers import BertConfig

        cfg = BertConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=ffn,
            hidden_dropout_prob=config.dropout,
            attention_probs_dropout_prob=config.dropout,
            max_position_embeddings=config.max_position,
            pad_token_id=pad_id,
        )
    elif config.arch == "gpt2":
        from transformers import GPT2Config

        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=heads,
            n_inner=ffn,
            n_positions=config.max_position,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    else:
        from transformers import LlamaConfig

        cfg = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            num_key_value_heads=heads,
            intermediate_size=ffn,
            max_position_embeddings=config.max_position,
            attention_dropout=config.dropout,
            tie_word_embeddings=True,
            bos_token_id=bos_id,
            eos_token_id=eos_id,
            pad_token_id=pad_id,
        )
    for key, value in extra.items():
        if not hasattr(cfg, key):
            raise ModelConfigError(f"model.overrides.{key}: not a field of {type(cfg).__name__}")
        setattr(cfg, key, value)
    cfg._attn_implementation = config.attention
    return cfg
