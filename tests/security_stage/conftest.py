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
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import (
    free_port,
    run_cli,
    stop_process,
    wait_until_healthy,
)

ROOT = Path(__file__).resolve().parents[2]
OUTPUT_DIR = ROOT / "test-output"
DEMO_PASSWORD = "orders-demo-2026"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

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


@dataclass
class Tokens:
    access: str
    refresh: str


@dataclass
class Server:
    base_url: str
    process: subprocess.Popen[bytes]
    workdir: Path
    env: dict[str, str] = field(repr=False)

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    @property
    def ws_url(self) -> str:
        return self.graphql_url.replace("http://", "ws://", 1)

    @property
    def jwt_secret(self) -> str:
        return self.env["JWT_SECRET"]

    def stderr_tail(self, chars: int = 4000) -> str:
        try:
            return (self.workdir / "server.stderr").read_text(errors="replace")[-chars:]
        except FileNotFoundError:
            return "<no stderr>"

    # -- GraphQL over HTTP ------------------------------------------------------------
    def post(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        client: httpx.Client | None = None,
    ) -> httpx.Response:
        sent = dict(headers or {})
        if token is not None:
            sent["authorization"] = f"Bearer {token}"
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        if client is not None:
            return client.post(self.graphql_url, json=payload, headers=sent)
        return httpx.post(self.graphql_url, json=payload, headers=sent, timeout=30.0)

    def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        response = self.post(query, variables, token=token, headers=headers)
        body: dict[str, Any] = response.json()
        return body

    def login(self, email: str, password: str = DEMO_PASSWORD) -> Tokens:
        body = self.gql(LOGIN, {"email": email, "password": password})
        payload = body["data"]["login"]
        assert payload["userErrors"] == [], payload["userErrors"]
        return Tokens(payload["tokens"]["accessToken"], payload["tokens"]["refreshToken"])

    def register(self, email: str | None = None, password: str | None = None) -> Tokens:
        """A new customer (no login: registering opens its first session)."""
        email = email or f"stage-{secrets.token_hex(6)}@example.com"
        password = password or f"Stage-{secrets.token_hex(8)}"
        body = self.gql(
            REGISTER, {"input": {"email": email, "password": password, "name": "Stage"}}
        )
        payload = body["data"]["register"]
        assert payload["userErrors"] == [], payload["userErrors"]
        return Tokens(payload["tokens"]["accessToken"], payload["tokens"]["refreshToken"])

    def order_codes(self, token: str) -> list[str]:
        body = self.gql("{ myOrders(first: 50) { edges { node { code } } } }", token=token)
        return [edge["node"]["code"] for edge in body["data"]["myOrders"]["edges"]]


LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    tokens { accessToken refreshToken }
    userErrors { field message code }
  }
}
"""

REGISTER = """
mutation Register($input: RegisterInput!) {
  register(input: $input) {
    tokens { accessToken refreshToken }
    userErrors { field message code }
  }
}
"""


def production_env(workdir: Path, **overrides: str) -> dict[str, str]:
    """Production mode with fresh random secrets: what the stage attacks."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "production",
        "JWT_SECRET": secrets.token_urlsafe(48),  # 64 characters
        "CARRIER_WEBHOOK_SECRET": secrets.token_urlsafe(48),
        "DATABASE_URL": f"sqlite:///{workdir / 'orders.db'}",
        "MAIL_DIR": str(workdir / "mail"),
        "OUTBOX_POLL_SECONDS": "0.5",
        "LOG_LEVEL": "INFO",
        # The stage registers its attackers' accounts from one address; the registration
        # budget itself is tested in tests/security/test_rate_limits.py.
        "RATE_REGISTRATIONS_PER_IP": "100000/hour",
    }
    env.update(overrides)
    return env


def start_server(workdir: Path, env: dict[str, str]) -> Server:
    workdir.mkdir(parents=True, exist_ok=True)
    run_cli(["migrate"], env, workdir)
    run_cli(["seed-demo"], env, workdir)
    port = free_port()
    with (
        (workdir / "server.stdout").open("wb") as out,
        (workdir / "server.stderr").open("wb") as err,
    ):
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=err,
        )
    server = Server(f"http://127.0.0.1:{port}", process, workdir, env)
    try:
        wait_until_healthy(server, START_TIMEOUT)
    except BaseException:  # pytest.fail raises an outcome, not an Exception
        stop_server(server)
        raise
    return server


def stop_server(server: Server) -> None:
    stop_process(server.process, STOP_TIMEOUT)


@pytest.fixture(scope="module")
def prod_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The real server in production mode with demo data, one per test module."""
    workdir = tmp_path_factory.mktemp("stage-server")
    server = start_server(workdir, production_env(workdir))
    try:
        yield server
    finally:
        stop_server(server)
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
