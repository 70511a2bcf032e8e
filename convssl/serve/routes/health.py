"""Liveness and counters: batches, commits, cache hits, which model backends serve, which
classifier version is served (`models:/NAME@ALIAS` resolves to a folder that records it)."""

from __future__ import annotations

import contextlib
import functools
import json
from pathlib import Path
from typing import Any

from fastapi import APIRouter

from convssl.serve.routes.common import State

router = APIRouter()


@functools.lru_cache(maxsize=8)
def served_model(classifier_path: str) -> dict[str, Any]:
    """The registered version (name, version, aliases, run) of the served classifier, else its folder."""
    from convssl.tracking.recorder import REGISTERED

    info: dict[str, Any] = {"path": classifier_path}
    record = Path(classifier_path) / REGISTERED
    if record.is_file():
        with contextlib.suppress(ValueError, OSError):
            data = json.loads(record.read_text(encoding="utf-8"))
            info.update({k: data.get(k) for k in ("name", "version", "aliases", "reference", "run_id")})
    return info


@router.get("/healthz")
async def health(s: State) -> dict[str, Any]:
    return {"ok": True, "batches": s.batcher.stats(), "db_commits": s.store.commits,
            "cache_hits": s.brain.cache_hits, "models": getattr(s.brain, "backends", {}),
            "classifier": served_model(s.config.classifier_path) if s.config.classifier_path else {}}
