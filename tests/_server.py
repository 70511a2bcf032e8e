"""Helpers for tests that start `convssl serve` as a subprocess on a free loopback port."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, proc: subprocess.Popen, seconds: float = 90, what: str = "the server") -> None:
    """Poll /healthz until it answers 200; fail with the server's output if it exits first."""
    deadline = time.time() + seconds
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else f"{what} exited"
        assert time.time() < deadline, f"{what} did not start within {seconds:.0f} s"
        time.sleep(0.3)
