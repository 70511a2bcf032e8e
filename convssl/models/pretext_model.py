"""A transformers backbone plus the small heads the pretext objectives need.

The backbone stays a stock transformers model so that a checkpoint is a plain Hugging Face
folder that anyone can open without convssl; the heads live beside it in `convssl_heads.safetensors`
so that training can resume with them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from convssl.data.special_tokens import special_ids
from convssl.models.encoder import PROMPTS_FILE
from convssl.models.fast import speed_up_encoder
from convssl.models.local import WEIGHT_FILE, load_backbone
from convssl.models.presets import DECODER_ARCHS, ModelConfig, ModelConfigError, hf_config, validate
from convssl.models.reference import ModelFolderError, check_model_folder


class HeadedObjective(Protocol):
    """What the model needs of a pretext objective (`convssl.pretext.base.PretextObjective`).

    A protocol rather than an import: `convssl.pretext` builds on `convssl.models`, never the
    other way round (docs/architecture.md)."""

    tokenizer: Any

    def check_model(self, model: PretextModel) -> None: ...

    def add_heads(self, model: PretextModel) -> None: ...

    def loss(self, model: PretextModel, batch: Any) -> tuple[torch.Tensor, dict[str, float]]: ...

LOG = logging.getLogger(__name__)
HEADS_FILE = "convssl_heads.safetensors"
META_FILE = "convssl_model.json"


class PretextModel(nn.Module):
    """`backbone` (BertModel, GPT2LMHeadModel or LlamaForCausalLM) and `heads` by objective.

    Calling the model runs an objective's loss (`model(batch, objective)`), so that a
    DistributedDataParallel wrapper sees every forward pass and synchronises gradients.
    """

    def __init__(self, backbone: nn.Module, arch: str, model_config: ModelConfig | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = nn.ModuleDict()
        self.arch = arch
        self.is_decoder = arch in DECODER_ARCHS
        self.model_config = model_config or ModelConfig(arch=arch)

    @property
    def config(self) -> Any:
        return self.backbone.config

    @property
    def hidden_size(self) -> int:
        return int(self.backbone.config.hidden_size)

    @property
    def trunk(self) -> nn.Module:
        """The transformer without any LM head (the backbone itself for encoders)."""
        return self.backbone.base_model if self.is_decoder else self.backbone

    def word_embeddings(self) -> nn.Embedding:
        return self.backbone.get_input_embeddings()

    def forward(self, batch: Any, objective: HeadedObjective) -> tuple[torch.Tensor, dict[str, float]]:
        return objective.loss(self, batch)

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Last hidden states [batch, length, hidden]; pass no mask when nothing is padded (faster)."""
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.is_decoder:
            kwargs["use_cache"] = False
        elif token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.trunk(**kwargs)[0]

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits of a decoder from hidden states (only where they are needed)."""
        return self.backbone.get_output_embeddings()(hidden)

    @staticmethod
    def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        if attention_mask is None:
            return hidden.mean(dim=1)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp_min(1.0)

    @staticmethod
    def cls_pool(hidden: torch.Tensor) -> torch.Tensor:
        return hidden[:, 0]


def _special_ids(tokenizer: Any) -> tuple[int, int, int]:
    ids = special_ids(tokenizer)
    return ids.pad, ids.bos, ids.eos


def _fresh_backbone(model_config: ModelConfig, tokenizer: Any) -> nn.Module:
    from transformers import BertModel, GPT2LMHeadModel, LlamaForCausalLM

    pad, bos, eos = _special_ids(tokenizer)
    cfg = hf_config(model_config, vocab_size=len(tokenizer), pad_id=pad, bos_id=bos, eos_id=eos)
    if model_config.arch == "bert":
        return BertModel(cfg, add_pooling_layer=False)
    if model_config.arch == "gpt2":
        return GPT2LMHeadModel(cfg)
    return LlamaForCausalLM(cfg)


def _resize_vocab(backbone: nn.Module, tokenizer: Any, folder: str) -> None:
    rows = backbone.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        LOG.info(
            "resizing the embeddings of %s from %d to %d rows for added tokens", folder, rows, len(tokenizer)
        )
        backbone.resize_token_embeddings(len(tokenizer), mean_resizing=True)
    elif len(tokenizer) < rows:
        LOG.info("the tokenizer has %d tokens, the model %d rows: keeping the rows", len(tokenizer), rows)


def build_pretext_model(
    model_config: ModelConfig, tokenizer: Any, objectives: Sequence[HeadedObjective]
) -> PretextModel:
    """A new model from a size preset, or one continued from a local folder (`init_from`)."""
    validate(model_config)
    head_state: dict[str, torch.Tensor] = {}
    if model_config.init_from:
        backbone, arch, head_state = load_backbone(model_config.init_from, model_config.attention)
        _resize_vocab(backbone, tokenizer, model_config.init_from)
        if arch != model_config.arch:
            LOG.info("init_from %s is a %s model: using arch %s", model_config.init_from, arch, arch)
            model_config = dataclasses.replace(model_config, arch=arch)
    else:
        backbone = _fresh_backbone(model_config, tokenizer)
        arch = model_config.arch
    if arch == "bert" and model_config.attention == "eager":
        speed_up_encoder(backbone)
    model = PretextModel(backbone, arch, model_config)
    for objective in objectives:
        objective.check_model(model)
        objective.add_heads(model)
    if head_state and "mlm" in model.heads:
        _load_mlm_head(model, head_state)
    if model_config.freeze_layers:
        freeze_lower_layers(model, model_config.freeze_layers)
    return model


def freeze_lower_layers(model: PretextModel, count: int) -> None:
    """Stop gradients at the embeddings and the lowest `count` blocks of a BERT-style encoder.

    Why: on a CPU a training step costs about three forward passes; with the bottom frozen,
    autograd records nothing below the first trainable block, so the backward pass (two thirds
    of the cost) shrinks to the top blocks. The lower layers of a pretrained encoder carry
    general lexical features that a pretext task should not need to move.
    """
    trunk = model.trunk
    blocks = getattr(getattr(trunk, "encoder", None), "layer", None)
    if model.is_decoder or not isinstance(blocks, nn.ModuleList) or not hasattr(trunk, "embeddings"):
        raise ModelConfigError(
            f"model.freeze_layers: needs a BERT-style encoder (embeddings + encoder.layer), "
            f"got arch {model.arch}")
    if count >= len(blocks):
        raise ModelConfigError(
            f"model.freeze_layers: {count} would freeze all {len(blocks)} blocks of the encoder; "
            f"use at most {len(blocks) - 1}")
    for module in [trunk.embeddings, *blocks[:count]]:
        module.requires_grad_(False)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    LOG.info("model.freeze_layers=%d: %d of %d blocks train (%.1fM parameters)",
             count, len(blocks) - count, len(blocks), trainable / 1e6)


def _load_mlm_head(model: PretextModel, head_state: dict[str, torch.Tensor]) -> None:
    """Reuse a checkpoint's BERT MLM head (transform and bias) when it has one."""
    head = model.heads["mlm"]
    wanted = {k: v for k, v in head_state.items() if k in head.state_dict()}
    if "predictions.bias" in wanted:
        bias = wanted["predictions.bias"]
        rows = head.state_dict()["predictions.bias"].shape[0]
        if bias.shape[0] < rows:  # vocabulary grew: new tokens start with zero bias
            wanted["predictions.bias"] = torch.cat([bias, bias.new_zeros(rows - bias.shape[0])])
    head.load_state_dict(wanted, strict=False)


# --------------------------------------------------------------------------------------------
# saving


def _identity_pooler(hidden: int) -> dict[str, torch.Tensor]:
    """A deterministic pooler (tanh of the [CLS] state): the pretext objectives never train one,
    but `AutoModel` builds BertModel with a pooler and should load without missing weights."""
    return {"pooler.dense.weight": torch.eye(hidden), "pooler.dense.bias": torch.zeros(hidden)}


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _save_encoder(model: PretextModel, out: Path) -> None:
    """Plain BertModel weights (with a pooler) and nothing else: `AutoModel` then loads the folder
    with neither missing nor unexpected keys. The MLM head goes to the heads file only, since
    BertModel would report it as unexpected."""
    state = _cpu(model.backbone.state_dict())
    state.pop("embeddings.position_ids", None)
    dtype = state["embeddings.word_embeddings.weight"].dtype
    state.update({k: v.to(dtype) for k, v in _identity_pooler(model.hidden_size).items()})
    cfg = model.backbone.config
    cfg.architectures = ["BertModel"]
    cfg.save_pretrained(str(out))
    save_file(state, str(out / WEIGHT_FILE), metadata={"format": "pt"})


def save_hf_folder(model: PretextModel, tokenizer: Any, out_dir: str | Path, card: dict[str, Any],
                   prompts: dict[str, str] | None = None) -> Path:
    """A Hugging Face folder that `AutoModel.from_pretrained` opens without convssl.

    `prompts` (name -> text put before an input, e.g. {"query": "context: "}) go to
    `config_sentence_transformers.json`, where sentence-transformers and convssl's `Encoder` read them.

    Encoders are saved as BertModel, decoders as their causal-LM class (so `AutoModel` gives the
    trunk and `AutoModelForCausalLM` the LM). All pretext heads go to `convssl_heads.safetensors`,
    which `load_pretext_model` reads to resume.
    """
    from convssl import __version__
    from convssl.models.model_card import render_model_card

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if model.is_decoder:
        model.backbone.save_pretrained(str(out), safe_serialization=True)
    else:
        _save_encoder(model, out)
    save_file(_cpu(model.heads.state_dict()) or {}, str(out / HEADS_FILE), metadata={"format": "pt"})
    tokenizer.save_pretrained(str(out))
    meta = {
        "convssl_version": __version__,
        "arch": model.arch,
        "model_config": dataclasses.asdict(model.model_config),
        "heads": sorted(model.heads.keys()),
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    if prompts:
        write_prompts(out, prompts)
    (out / "README.md").write_text(
        render_model_card(card, model=model, tokenizer=tokenizer), encoding="utf-8"
    )
    return out


def write_prompts(folder: Path, prompts: dict[str, str]) -> None:
    """sentence-transformers' prompt file: `encode_query` / `encode_document` then add them."""
    settings = {"prompts": dict(prompts), "default_prompt_name": None, "similarity_fn_name": "cosine"}
    (folder / PROMPTS_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")


def load_pretext_model(folder: str | Path, objectives: Sequence[HeadedObjective]) -> PretextModel:
    """Rebuild a model saved by `save_hf_folder`, heads included, to resume training."""
    folder = check_model_folder(folder)
    if not objectives:
        raise ValueError("load_pretext_model needs the objectives (they carry the tokenizer and the heads)")
    meta_path = folder / META_FILE
    if not meta_path.exists():
        raise ModelFolderError(
            f"{folder} has no {META_FILE}: not a convssl checkpoint (use model.init_from for other folders)"
        )
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    from convssl.config import from_dict

    saved = from_dict(ModelConfig, meta["model_config"], where=str(meta_path))
    config = dataclasses.replace(saved, init_from=str(folder), arch=meta["arch"])
    model = build_pretext_model(config, objectives[0].tokenizer, objectives)
    model.model_config = saved
    heads_path = folder / HEADS_FILE
    if heads_path.exists():
        state = load_file(str(heads_path))
        current = model.heads.state_dict()
        bad = [k for k, v in state.items() if k in current and current[k].shape != v.shape]
        if bad:
            raise ModelFolderError(f"{heads_path}: head shapes differ from the objectives' heads: {bad}")
        missing, _ = model.heads.load_state_dict(state, strict=False)
        if missing:
            LOG.info("heads not in %s start fresh: %s", heads_path, missing)
    return model
