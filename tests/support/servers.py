"""`mdstudio serve` run for real by the tests: a free port for it, and waiting until it answers."""

from __future__ import annotations

import socket
import subprocess
import time

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def healthz_when_up(server: subprocess.Popen, base: str, timeout_s: float) -> httpx.Response:
    """The server's first answer on /healthz. If it exits first, or has not answered within
    `timeout_s`, it is killed and the test fails with what it wrote."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return httpx.get(f"{base}/healthz", timeout=2)
        except httpx.TransportError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                stdout, stderr = server.communicate()
                pytest.fail("server did not start: " + (stderr or stdout or b"").decode())
            time.sleep(0.2)
