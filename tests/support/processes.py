"""The real server process and the CLI, for every suite that runs them (e2e, scale,
nonblocking, the security stage, the browsers): free ports, `orders-api <command>` run to
completion, waiting until a started server answers /healthz, stopping it."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

import httpx
import pytest

CLI_TIMEOUT = 120.0
STOP_TIMEOUT = 10.0


class Started(Protocol):
    """A server process started by a test: where it listens and what it logged."""

    @property
    def base_url(self) -> str: ...

    @property
    def process(self) -> subprocess.Popen[bytes]: ...

    def stderr_tail(self, chars: int = 4000) -> str: ...


def free_port() -> int:
    """A port nothing listens on (the OS picked it and we let it go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> None:
    """`orders-api <args>` in its own process; the test fails with its output if it fails."""
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`orders-api {' '.join(args)}` exited with {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
        )


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM (a clean shutdown), then SIGKILL if it does not end within `timeout`."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def wait_until_healthy(server: Started, timeout: float) -> None:
    """Poll /healthz until it answers 200; fail early if the process exits."""
    deadline = time.monotonic() + timeout
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        code = server.process.poll()
        if code is not None:
            pytest.fail(f"server exited with {code} while starting:\n{server.stderr_tail()}")
        try:
            response = httpx.get(f"{server.base_url}/healthz", timeout=1.0)
        except httpx.TransportError as exc:
            last_problem = repr(exc)
        else:
            if response.status_code == 200:
                return
            last_problem = f"HTTP {response.status_code}"
        time.sleep(0.1)
    pytest.fail(f"server not healthy after {timeout} s ({last_problem}):\n{server.stderr_tail()}")
