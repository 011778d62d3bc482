"""The security stage's server: the REAL server (`python -m app.cli serve`) in production
mode with fresh random secrets and demo data, on a free loopback port, and a caller of it
over real sockets (GraphQL over HTTP, login, registration). Used by the security stage and
the browser tests."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.processes import free_port, run_cli, stop_process, wait_until_healthy

DEMO_PASSWORD = "orders-demo-2026"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


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


@contextmanager
def stage_server(
    tmp_path_factory: pytest.TempPathFactory, name: str, **overrides: str
) -> Iterator[Server]:
    """A production server of its own (environment `overrides` on top of production_env)
    in a fresh directory named after `name`, stopped when the block ends."""
    workdir = tmp_path_factory.mktemp(name)
    server = start_server(workdir, production_env(workdir, **overrides))
    try:
        yield server
    finally:
        stop_server(server)
