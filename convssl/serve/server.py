"""Running the app on uvicorn: the settings `convssl serve` uses, and a server in a thread."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Any

from fastapi import FastAPI


def uvicorn_config(app: FastAPI, host: str, port: int, log_level: str = "warning"):
    import uvicorn

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          loop="uvloop", http="httptools", lifespan="on", timeout_graceful_shutdown=2)


class BackgroundServer:
    """uvicorn in a thread on a free port: for tests, the load script and screenshots."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        import uvicorn

        if port == 0:
            with contextlib.closing(socket.socket()) as sock:
                sock.bind((host, 0))
                port = sock.getsockname()[1]
        self.host, self.port = host, port
        self.server = uvicorn.Server(uvicorn_config(app, host, port, log_level))
        self.server.install_signal_handlers = lambda: None  # not the main thread
        self.thread = threading.Thread(target=self.server.run, name="convssl-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> BackgroundServer:
        self.thread.start()
        deadline = time.time() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.time() > deadline:
                raise RuntimeError("the server did not start (see the log above)")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
