"""FastAPI app factory for `convssl serve`: one shared state, one router per audience.

Everything runs in one process and one event loop: model work is micro-batched in a worker
thread, SQLite writes are group-committed in a writer thread, and the loop only does I/O. That
is what makes a 2-core machine serve hundreds of chat turns a second.

Layout: `state.py` holds what every route shares (on `app.state.serve`, reached through the
`get_state` dependency); `routes/` holds the routers (chat, agent, pages, health); `schemas.py`
the request and response bodies; `server.py` the uvicorn settings.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from convssl.serve import accounts
from convssl.serve.analysis import Brain
from convssl.serve.config import ServeConfig
from convssl.serve.limits import BodyLimit
from convssl.serve.routes import agent, chat, health, pages
from convssl.serve.routes.common import error
from convssl.serve.server import BackgroundServer, uvicorn_config
from convssl.serve.state import ServeState

__all__ = ["BackgroundServer", "create_app", "uvicorn_config"]
LOG = logging.getLogger("convssl.serve")


def create_app(config: ServeConfig, brain: Brain | None = None) -> FastAPI:
    """Build the app; pass a loaded `brain` to share models between app instances (tests)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state = ServeState(config, brain or await asyncio.to_thread(Brain.load, config))
        if state.token:
            LOG.warning("agent_token (one token shared by every agent) is deprecated: give each person an "
                        "account with `convssl agents create NAME --db %s`, then unset it", config.db_path)
        elif not state.store.read_sync(accounts.has_accounts):
            LOG.warning("no agent accounts: the agent API and console are disabled until one is created "
                        "(`convssl agents create NAME --db %s`)", config.db_path)
        state.batcher.start()
        # The models, tokenizers and libraries are a few million long-lived Python objects; each
        # full garbage collection walked them all (a 100-300 ms stall: the closed-loop p99).
        # Frozen, they are never traversed again; only objects made while serving are.
        gc.collect()
        gc.freeze()
        app.state.serve = state
        try:
            yield
        finally:
            await state.batcher.stop()
            state.store.close()

    app = FastAPI(title="convssl serve", version="1", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Content-Type", "Authorization"])
    # Outermost, so an oversized or trickling body is refused before anything else reads it.
    app.add_middleware(BodyLimit, max_bytes=config.limits.max_body_bytes, timeout_s=config.limits.body_timeout_s)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for module in (pages, health, chat, agent):
        app.include_router(module.router)
    return app


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errors):
        return error(400, "request body is not valid JSON")
    if any(tuple(e.get("loc", ())) == ("body",) for e in errors):
        return error(400, "request body must be a JSON object (Content-Type: application/json)")
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body") or "body"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}")
    return error(422, "; ".join(parts))


async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    return error(exc.status_code, str(exc.detail), headers=exc.headers)
