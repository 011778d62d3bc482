"""The security stage: the REAL server (`python -m app.cli serve`) in production mode, on a
free loopback port, with demo data, attacked over real sockets (httpx, websockets).

Each test module gets its own server (module-scoped fixture), so one module's lockouts and
logouts never leak into another. Self-sufficient: nothing here relies on tests/conftest.py
or tests/e2e/conftest.py; the process plumbing is tests/support/processes.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.processes import free_port
from tests.support.servers import (
    DEMO_PASSWORD,
    LOGIN,
    REGISTER,
    START_TIMEOUT,
    STOP_TIMEOUT,
    Server,
    Tokens,
    production_env,
    stage_server,
    start_server,
    stop_server,
)

__all__ = [  # what the stage's and the browsers' tests import from here
    "DEMO_PASSWORD",
    "LOGIN",
    "REGISTER",
    "START_TIMEOUT",
    "STOP_TIMEOUT",
    "Server",
    "Tokens",
    "free_port",
    "production_env",
    "stage_server",
    "start_server",
    "stop_server",
]

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = ROOT / "test-output"

# Every code the API may answer with (app/errors.py ErrorCode, DESIGN §6).
ERROR_CODES = frozenset(
    {
        "UNAUTHENTICATED",
        "FORBIDDEN",
        "ORDER_NOT_FOUND",
        "INVALID_ORDER_CODE",
        "RATE_LIMITED",
        "BAD_USER_INPUT",
        "CONFLICT",
        "SERVICE_UNAVAILABLE",
        "INTERNAL",
    }
)

# What an unhandled error leaks when it is not masked: tracebacks, file paths, SQL, driver
# and exception class names.
LEAK_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"traceback",
        r"stack ?trace",
        r'file "',
        r"\.py\b",
        r"site-packages",
        r"/work/|/home/|/usr/|/tmp/",
        r"\bselect\b.+\bfrom\b",
        r"\binsert into\b",
        r"\bupdate\b.+\bset\b",
        r"sqlalchemy|sqlite3?|psycopg|postgres",
        r"\b[A-Za-z]+(Error|Exception)\b",
        r"\bline \d+, in\b",
        r"'exception'|\"exception\"",
    )
]


def leaks(text: str) -> list[str]:
    """The leak patterns found in `text` (an empty list is a clean answer)."""
    return [p.pattern for p in LEAK_PATTERNS if p.search(text)]


def record(name: str, lines: list[str]) -> Path:
    """Print figures and keep them in test-output/<name> (pytest -s is not needed to read
    them)."""
    OUTPUT_DIR.mkdir(exist_ok=True)
    path = OUTPUT_DIR / name
    text = "\n".join(lines) + "\n"
    path.write_text(text, encoding="utf-8")
    print("\n" + text)
    return path


# -- the server process -------------------------------------------------------------------


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server in production mode with demo data, one per test module."""
    with stage_server(tmp_path_factory, "stage-server") as server:
        yield server
    assert server.process.returncode is not None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test shows the tail of its server's log next to its traceback."""
    report: pytest.TestReport = yield
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, Server):
                report.sections.append(("server stderr (tail)", value.stderr_tail()))
    return report


# -- JWT forging (no third-party crypto needed: HMAC and base64url are enough) --------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def forge(
    header: dict[str, Any],
    claims: dict[str, Any],
    key: bytes | None,
    digest: str = "sha256",
) -> str:
    """A JWT with any header and claims, HMAC-signed with `key` (or unsigned if None)."""
    signing_input = f"{b64url_json(header)}.{b64url_json(claims)}"
    if key is None:
        return signing_input + "."
    mac = hmac.new(key, signing_input.encode(), getattr(hashlib, digest)).digest()
    return f"{signing_input}.{b64url(mac)}"


@pytest.fixture(scope="module")
def alice(prod_server: Server) -> Tokens:
    """A module-long session of alice (tests that end sessions log in on their own)."""
    return prod_server.login("alice@example.com")


@pytest.fixture(scope="module")
def bob(prod_server: Server) -> Tokens:
    return prod_server.login("bob@example.com")
