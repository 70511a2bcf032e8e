"""Model cards: what a checkpoint was trained on, with what, for how long, and how well.

A card travels inside the checkpoint folder (README.md), so the facts needed to trust or reproduce
a model stay with it when it is copied away from its run folder.
"""

from __future__ import annotations

import json
from typing import Any

# The keys a training loop should fill; missing ones are printed as "not recorded".
CARD_KEYS = ("data", "objectives", "steps", "tokens_seen", "metrics")


def _fmt(value: Any) -> str:
    if value is None:
        return "not recorded"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, (dict, list)):
        return "`" + json.dumps(value, default=str) + "`"
    return str(value)


def _objective_lines(objectives: Any) -> list[str]:
    if not objectives:
        return ["- not recorded"]
    lines = []
    for obj in objectives if isinstance(objectives, list) else [objectives]:
        if isinstance(obj, dict):
            name = obj.get("name", "?")
            rest = {k: v for k, v in obj.items() if k != "name" and v not in (None, [], {})}
            lines.append(f"- `{name}`: " + ", ".join(f"{k}={_fmt(v)}" for k, v in rest.items()))
        else:
            lines.append(f"- `{obj}`")
    return lines


def _data_lines(data: Any) -> list[str]:
    if data is None:
        return ["- not recorded"]
    if isinstance(data, dict):
        return [f"- {k}: {_fmt(v)}" for k, v in data.items()]
    if isinstance(data, list):
        return [f"- {_fmt(v)}" for v in data]
    return [f"- {data}"]


def _usage(model: Any) -> list[str]:
    auto = "AutoModelForCausalLM" if model is not None and model.is_decoder else "AutoModel"
    return [
        "```python",
        f"from transformers import AutoTokenizer, {auto}",
        "tokenizer = AutoTokenizer.from_pretrained(PATH)",
        f"model = {auto}.from_pretrained(PATH)",
        "```",
        "Each turn is written `ROLE text [EOT]` with the role tokens `[USR] [SYS] [A] [B]`; encoders "
        "were trained on `[CLS] turns... [SEP]`.",
    ]


def render_model_card(card: dict[str, Any], model: Any = None, tokenizer: Any = None) -> str:
    """Markdown with YAML front matter; `card` keys beyond CARD_KEYS are listed under Details."""
    from convssl import __version__

    arch = getattr(model, "arch", card.get("arch", "unknown"))
    lines = [
        "---",
        "library_name: transformers",
        "tags: [convssl, dialogue, self-supervised]",
        "---",
        "",
        f"# {card.get('name', 'convssl pretrained ' + str(arch) + ' model')}",
        "",
        f"Pretrained with convssl {__version__} (self-supervised learning on dialogue).",
        "",
        "## Model",
        "",
        f"- architecture: {arch}",
    ]
    if model is not None:
        cfg = model.config
        params = sum(p.numel() for p in model.backbone.parameters())
        lines += [
            f"- preset: {model.model_config.preset}"
            + (f" (continued from {model.model_config.init_from})" if model.model_config.init_from else ""),
            f"- layers x hidden x heads: {cfg.num_hidden_layers} x {cfg.hidden_size} x {cfg.num_attention_heads}",
            f"- parameters (backbone): {params:,}",
        ]
    if tokenizer is not None:
        lines.append(f"- vocabulary: {len(tokenizer):,} tokens")
    lines += ["", "## Training data", "", *_data_lines(card.get("data")), ""]
    lines += ["## Objectives", "", *_objective_lines(card.get("objectives")), ""]
    lines += [
        "## Training",
        "",
        f"- optimizer steps: {_fmt(card.get('steps'))}",
        f"- tokens seen: {_fmt(card.get('tokens_seen'))}",
        "",
        "## Metrics",
        "",
    ]
    metrics = card.get("metrics") or {}
    if metrics:
        lines += ["| metric | value |", "|---|---|", *(f"| {k} | {_fmt(v)} |" for k, v in metrics.items())]
    else:
        lines.append("not recorded")
    extra = {k: v for k, v in card.items() if k not in (*CARD_KEYS, "name", "arch")}
    if extra:
        lines += ["", "## Details", "", *(f"- {k}: {_fmt(v)}" for k, v in extra.items())]
    lines += ["", "## Usage", "", *_usage(model), ""]
    return "\n".join(lines)
