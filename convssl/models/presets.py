"""Model sizes as YAML presets, turned into Hugging Face configs.

Sizes live in `convssl/configs/models/*.yaml` so that a new size is a new file, and the same
preset gives an encoder (BERT) or a decoder (GPT-2, Llama) of matching shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

from convssl.config import ConfigError

PRESET_DIR = Path(__file__).resolve().parents[1] / "configs" / "models"
SIZE_KEYS = ("num_layers", "hidden_size", "num_heads", "intermediate_size")
Arch = Literal["bert", "gpt2", "llama"]
Attention = Literal["eager", "sdpa"]
ENCODER_ARCHS = ("bert",)
DECODER_ARCHS = ("gpt2", "llama")
ARCHS: tuple[str, ...] = get_args(Arch)
ATTENTIONS: tuple[str, ...] = get_args(Attention)


class ModelConfigError(ConfigError):
    """A model preset, architecture or override is invalid."""


@dataclass
class ModelConfig:
    """Which network to pretrain.

    `init_from` names a local Hugging Face folder to continue pretraining (its architecture and
    size win over `preset`/`arch`); `overrides` changes preset sizes (`num_layers`, `hidden_size`,
    `num_heads`, `intermediate_size`) or sets any other field of the Hugging Face config.
    """

    preset: str = "mini"
    """Size preset of convssl/configs/models (tiny, mini, small, base)."""
    arch: Arch = "bert"
    """bert (encoder), gpt2 or llama (decoders)."""
    init_from: str | None = None
    """Continue from this local model folder, pretraining run or installed model package."""
    dropout: float = 0.1
    """Dropout of a fresh model."""
    attention: Attention = "eager"
    """Attention kernel: eager (convssl's fused CPU path) or sdpa."""
    max_position: int = 512
    """Longest sequence a fresh model can take."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """Preset sizes or any other field of the Hugging Face config to change."""
    freeze_layers: int = 0
    """Freeze the embeddings and this many lowest transformer blocks (BERT layout); 0: train all.
    Backward then runs only through the blocks above, so a step costs less on a CPU."""


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
    if config.freeze_layers < 0:
        raise ModelConfigError(f"model.freeze_layers must be >= 0, got {config.freeze_layers}")


# How each transformers config names our settings (one of ours may fill several of theirs), and
# what it always gets. One table instead of three constructor calls that differ only in names.
HF_CONFIGS: dict[str, tuple[str, dict[str, tuple[str, ...]], dict[str, Any]]] = {
    "bert": ("BertConfig", {
        "num_layers": ("num_hidden_layers",), "hidden_size": ("hidden_size",), "num_heads": ("num_attention_heads",),
        "intermediate_size": ("intermediate_size",), "max_position": ("max_position_embeddings",),
        "dropout": ("hidden_dropout_prob", "attention_probs_dropout_prob"), "pad_id": ("pad_token_id",),
    }, {}),
    "gpt2": ("GPT2Config", {
        "num_layers": ("n_layer",), "hidden_size": ("n_embd",), "num_heads": ("n_head",),
        "intermediate_size": ("n_inner",), "max_position": ("n_positions",),
        "dropout": ("resid_pdrop", "embd_pdrop", "attn_pdrop"),
        "pad_id": ("pad_token_id",), "bos_id": ("bos_token_id",), "eos_id": ("eos_token_id",),
    }, {}),
    "llama": ("LlamaConfig", {
        "num_layers": ("num_hidden_layers",), "hidden_size": ("hidden_size",),
        "num_heads": ("num_attention_heads", "num_key_value_heads"), "intermediate_size": ("intermediate_size",),
        "max_position": ("max_position_embeddings",), "dropout": ("attention_dropout",),
        "pad_id": ("pad_token_id",), "bos_id": ("bos_token_id",), "eos_id": ("eos_token_id",),
    }, {"tie_word_embeddings": True}),
}


def hf_config(config: ModelConfig, vocab_size: int, pad_id: int, bos_id: int, eos_id: int) -> Any:
    """A transformers config for training from scratch."""
    import transformers

    validate(config)
    sizes, extra = resolved_sizes(config)
    ours = {**{k: sizes[k] for k in SIZE_KEYS}, "max_position": config.max_position, "dropout": config.dropout,
            "pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}
    class_name, names, fixed = HF_CONFIGS[config.arch]
    kwargs = {theirs: ours[key] for key, their_names in names.items() for theirs in their_names}
    cfg = getattr(transformers, class_name)(vocab_size=vocab_size, **kwargs, **fixed)
    for key, value in extra.items():
        if not hasattr(cfg, key):
            raise ModelConfigError(f"model.overrides.{key}: not a field of {type(cfg).__name__}")
        setattr(cfg, key, value)
    cfg._attn_implementation = config.attention
    return cfg
