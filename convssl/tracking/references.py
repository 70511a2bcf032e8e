"""`models:/NAME@ALIAS` and `models:/NAME/VERSION`: registered versions as local folders.

A version is downloaded once into `runs/mlflow/models/<store>/NAME/vN/` (atomically, so two
commands resolving it at once never see half a folder), with `registered_model.json` naming the
version, its aliases and its run: `convssl serve` shows that in /healthz, and lineage follows it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convssl.tracking.recorder import REGISTERED, mlflow_client
from convssl.tracking.settings import resolve_uri, tracking_dir

MODELS_PREFIX = "models:/"
_REF = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w\-]+)|/(?P<version>\d+|latest))$")


class ModelReferenceError(ValueError):
    """A `models:/` reference that names no registered version (or a store that cannot be reached)."""


@dataclass
class ModelRef:
    name: str
    alias: str | None = None
    version: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        match = _REF.match(text.strip())
        if not match:
            raise ModelReferenceError(f"{text!r} is not a model reference: write models:/NAME@ALIAS "
                                      "(e.g. models:/banking-intent@champion) or models:/NAME/VERSION")
        return cls(match["name"], match["alias"], match["version"])

    def __str__(self) -> str:
        return f"models:/{self.name}@{self.alias}" if self.alias else f"models:/{self.name}/{self.version}"


def _version_summary(client: Any, name: str) -> str:
    versions = client.search_model_versions(f"name='{name}'")
    if not versions:
        return f"no registered model {name!r} (see `convssl registry list`)"
    aliases = client.get_registered_model(name).aliases or {}
    shown = ", ".join(sorted((v.version for v in versions), key=int))
    named = ", ".join(f"{a}->{v}" for a, v in sorted(aliases.items())) or "none"
    return f"{name} has versions {shown}; aliases {named}"


def lookup_version(client: Any, ref: ModelRef) -> Any:
    """The ModelVersion a reference names, or a one-line error saying what exists instead."""
    from mlflow.exceptions import MlflowException

    try:
        if ref.alias:
            return client.get_model_version_by_alias(ref.name, ref.alias)
        if ref.version == "latest":
            versions = client.search_model_versions(f"name='{ref.name}'")
            if versions:
                return max(versions, key=lambda v: int(v.version))
            raise ModelReferenceError(f"{ref}: {_version_summary(client, ref.name)}")
        return client.get_model_version(ref.name, ref.version)
    except MlflowException as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code) or "not found" in str(exc).lower():
            try:
                detail = _version_summary(client, ref.name)
            except MlflowException:
                detail = f"no registered model {ref.name!r}"
            raise ModelReferenceError(f"{ref}: no such version or alias ({detail})") from exc
        raise ModelReferenceError(f"{ref}: the registry at {client.tracking_uri} failed: "
                                  f"{str(exc).splitlines()[0]}") from exc


def _cache_dir(uri: str, name: str, version: str) -> Path:
    store = hashlib.sha256(uri.encode()).hexdigest()[:8]
    return tracking_dir() / "models" / store / name / f"v{version}"


def download_version(client: Any, version: Any, uri: str) -> Path:
    """The version's folder on this machine, downloaded on first use."""
    import mlflow.artifacts

    target = _cache_dir(uri, version.name, version.version)
    if not (target / REGISTERED).exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.parent / f".v{version.version}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=str(tmp), tracking_uri=uri)
        folder = _only_subfolder(tmp)
        record = {"name": version.name, "version": str(version.version), "run_id": version.run_id,
                  "source": version.source, "tracking_uri": uri}
        (folder / REGISTERED).write_text(json.dumps(record, indent=2), encoding="utf-8")
        try:
            folder.rename(target)
        except OSError:  # another command finished the same download first: keep theirs
            pass
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _only_subfolder(folder: Path) -> Path:
    """download_artifacts puts `.../model` under dst as `model/`: the model is that subfolder."""
    entries = list(folder.iterdir())
    if len(entries) == 1 and entries[0].is_dir() and not (folder / "config.json").exists():
        return entries[0]
    return folder


def resolve_model_uri(text: str, tracking_uri: str | None = None) -> Path:
    """Local folder of `models:/NAME@ALIAS` (or `/VERSION`), with the alias recorded beside it."""
    ref = ModelRef.parse(text)
    uri = resolve_uri(tracking_uri)
    try:
        client = mlflow_client(uri)
        version = lookup_version(client, ref)
        folder = download_version(client, version, uri)
    except ModelReferenceError:
        raise
    except Exception as exc:  # noqa: BLE001 - a dead server or a missing artifact: one clear line
        raise ModelReferenceError(f"{ref}: cannot fetch it from {uri}: {str(exc).splitlines()[0][:300]}") from exc
    record = json.loads((folder / REGISTERED).read_text(encoding="utf-8"))
    record["reference"] = str(ref)
    record["aliases"] = sorted(getattr(version, "aliases", []) or [])
    (folder / REGISTERED).write_text(json.dumps(record, indent=2), encoding="utf-8")
    return folder


def _resolve_value(value: str, uri: str | None) -> str:
    if value.startswith(MODELS_PREFIX):
        return str(resolve_model_uri(value, uri))
    key, sep, rest = value.partition("=")
    if sep and rest.startswith(MODELS_PREFIX):
        return f"{key}={resolve_model_uri(rest, uri)}"
    return value


def resolve_in_args(args: argparse.Namespace) -> None:
    """Replace every `models:/` value (or `key=models:/...` override) of a parsed command line."""
    uri = getattr(args, "tracking_uri", None)
    for attr, value in list(vars(args).items()):
        if isinstance(value, str):
            setattr(args, attr, _resolve_value(value, uri))
        elif isinstance(value, list):
            setattr(args, attr, [_resolve_value(v, uri) if isinstance(v, str) else v for v in value])
