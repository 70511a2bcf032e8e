"""The written answers: intent -> answer templates from YAML, with slots filled per request.

This module only renders text; which kind of reply a turn gets is decided in `policy.py`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path

from convssl.config import read_yaml_mapping

_SLOT = re.compile(r"{(\w+)}")
_SPACE_PUNCT = re.compile(r"\s+([.,!?;:])")


class ResponsesError(ValueError):
    """The responses YAML or the bank file is malformed; the message names file and entry."""


@dataclass
class Templates:
    """Intent -> answers, with default slot values so a template never shows a raw `{slot}`."""

    answers: dict[str, list[str]]
    defaults: dict[str, str]

    def render(self, intent: str, slots: dict[str, str] | None = None, rng: random.Random | None = None) -> str | None:
        options = self.answers.get(intent)
        if not options:
            return None
        values = {**self.defaults, **(slots or {})}
        template = (rng or random).choice(options)
        text = _SLOT.sub(lambda m: str(values.get(m.group(1), "")), template)
        return _SPACE_PUNCT.sub(r"\1", re.sub(r"\s{2,}", " ", text)).strip()


def load_templates(path: str | Path | None) -> Templates:
    if not path:
        return Templates({}, {})
    path = package_relative(Path(path))
    if not path.exists():
        raise FileNotFoundError(f"responses file {path} does not exist")
    data = read_yaml_mapping(path, ResponsesError)
    if "intents" in data:
        unknown = sorted(set(data) - {"intents", "defaults"})
        if unknown:
            raise ResponsesError(f"{path}: unknown top-level key(s) {unknown}; expected 'intents' and 'defaults'")
        intents, defaults = data.get("intents") or {}, data.get("defaults") or {}
    else:
        intents, defaults = data, {}
    if not isinstance(intents, dict) or not isinstance(defaults, dict):
        raise ResponsesError(f"{path}: 'intents' and 'defaults' must be mappings")
    answers: dict[str, list[str]] = {}
    for intent, value in intents.items():
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items or not all(isinstance(v, str) and v.strip() for v in items):
            raise ResponsesError(f"{path}: intent {intent!r} needs a non-empty answer or list of answers")
        answers[str(intent)] = [v.strip() for v in items]
    return Templates(answers, {str(k): str(v) for k, v in defaults.items()})


def package_relative(path: Path) -> Path:
    """Presets name shipped files (convssl/serve/demo/...) relative to the source tree."""
    if path.exists() or path.is_absolute():
        return path
    candidate = Path(__file__).resolve().parents[2] / path
    return candidate if candidate.exists() else path
