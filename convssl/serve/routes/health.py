"""Liveness and counters: batches, commits, cache hits, which model backends serve."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from convssl.serve.routes.common import State

router = APIRouter()


@router.get("/healthz")
async def health(s: State) -> dict[str, Any]:
    return {"ok": True, "batches": s.batcher.stats(), "db_commits": s.store.commits,
            "cache_hits": s.brain.cache_hits, "models": getattr(s.brain, "backends", {})}
