"""The chat page, the agent console and their static files, with a strict content policy."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).resolve().parents[1] / "static"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
                               " connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

router = APIRouter(include_in_schema=False)


def _static(name: str, media_type: str) -> Response:
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=PAGE_HEADERS)


@router.get("/")
async def chat_page() -> Response:
    return _static("chat.html", "text/html; charset=utf-8")


@router.get("/agent")
async def console_page() -> Response:
    return _static("agent.html", "text/html; charset=utf-8")


@router.get("/static/{name}")
async def static_file(name: str) -> Response:
    suffix = Path(name).suffix
    if suffix not in STATIC_TYPES or "/" in name or not (STATIC / name).is_file():
        raise HTTPException(404, "not found")
    return _static(name, STATIC_TYPES[suffix])
