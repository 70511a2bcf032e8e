"""The package map: which part of convssl may import which.

Stages build on each other from the bottom up; a part may import its own layer's modules and
anything below it, never above, and two parts on the same layer do not import each other.
`tests/test_layers.py` walks every import (lazy and type-only ones included) and fails on an
upward import or an import circle; docs/architecture.md prints this same table.
"""

from __future__ import annotations

# Bottom first. Each entry: (layer, parts on that layer, why it sits there).
LAYERS: list[tuple[int, tuple[str, ...], str]] = [
    (0, ("config", "utils", "layers"), "typed YAML configs; seeding, autocast, progress bars: used by every stage"),
    (1, ("runs",), "run folders: atomic JSON, saved configs, logs"),
    (2, ("data", "tracking"), "readers, curation, tokenizer, shards, special tokens: no model code; "
                              "experiment tracking and the model registry on MLflow (reads run folders)"),
    (3, ("models",), "backbones, size presets, model references and folder checks, encoders, ONNX export"),
    (4, ("pretext",), "objectives: they add heads to a `models` backbone and turn shards into losses"),
    (5, ("train",), "the pretraining loop over `pretext` objectives"),
    (6, ("downstream",), "intent classifiers: full fine-tuning, SetFit, the ONNX classifier twin"),
    (7, ("evaluate", "serve"), "consumers of trained models: neither imports the other"),
    (8, ("cli",), "one module per verb: parses flags, calls the stages"),
    (9, ("__main__",), "`python -m convssl`"),
]


def layer_of(part: str) -> int:
    """The layer of a top-level module or subpackage of convssl (`data`, `runs`, ...)."""
    for layer, parts, _ in LAYERS:
        if part in parts:
            return layer
    raise KeyError(f"convssl.{part} is on no layer of convssl/layers.py: add it there")


def may_import(importer: str, imported: str) -> bool:
    """Whether part `importer` may import part `imported` (both top-level names under convssl)."""
    if importer == imported:
        return True
    return layer_of(imported) < layer_of(importer)
