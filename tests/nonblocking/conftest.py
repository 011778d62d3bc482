"""One real API process (demo-seeded) on SQLite or a scratch PostgreSQL database of its own,
with environment overrides per test, and the tools to make its backing systems slow: hold a
lock the way a slow statement would, measure how long answers take.

Nothing here stands in for I/O with a sleep inside the server: the database really waits
(a row lock, SQLite's write lock), the payment provider really takes its time (its
configured latency), Redis really does not answer (a TCP listener that never replies).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.security import codes
from tests.conftest import scratch_postgres_url
from tests.e2e.conftest import (
    DEMO_PASSWORD,
    OUTBOX_POLL_SECONDS,
    SERVER_START_TIMEOUT,
    LiveServer,
    SmtpSink,
)
from tests.e2e.conftest import smtp_server as smtp_server  # the fixture, for this directory
from tests.support.processes import free_port, run_cli, stop_process, wait_until_healthy

SERVE = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1"]
LOGIN = (
    "mutation($e: String!, $p: String!) { login(email: $e, password: $p) "
    "{ tokens { accessToken } userErrors { code } } }"
)
MY_ORDERS = (
    "query($s: [OrderStatus!]) { myOrders(first: 10, filter: {status: $s}) "
    "{ edges { node { code status } } } }"
)
ORDER = "query($code: String!) { order(code: $code) { code status } }"
CANCEL = (
    "mutation($code: String!) { cancelOrder(code: $code) { order { status } "
    "userErrors { code message } } }"
)


@dataclass
class Database:
    """The database the server under test uses, and a way in for the test."""

    kind: str  # sqlite | postgres
    url: str

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    def scalar(self, sql: str, *params: Any) -> Any:
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.sqlite_path)) as conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchone()[0]
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute(sql, params).fetchone()
            assert row is not None
            return row[0]

    @contextlib.contextmanager
    def locked(self, order_code: str) -> Iterator[None]:
        """Hold what a write to this order must wait for, until the block ends: the order's
        row (PostgreSQL, SELECT ... FOR UPDATE) or the database's write lock (SQLite)."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30)
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield
            finally:
                conn.execute("ROLLBACK")
                conn.close()
            return
        with psycopg.connect(self.url) as pg:
            found = pg.execute(
                "SELECT id FROM orders WHERE code = %s FOR UPDATE", (codes.normalise(order_code),)
            ).fetchone()
            assert found is not None, "no such order to lock"
            try:
                yield
            finally:
                pg.rollback()


@contextlib.contextmanager
def scratch_postgres() -> Iterator[Database]:
    """A PostgreSQL database of the test's own, dropped afterwards."""
    with scratch_postgres_url("orders_nb") as url:
        yield Database("postgres", url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        yield Database("sqlite", f"sqlite:///{tmp_path / 'orders.db'}")
        return
    with scratch_postgres() as database:
        yield database


@pytest.fixture
def start_server(
    database: Database, smtp_server: SmtpSink, tmp_path: Path
) -> Iterator[Callable[..., LiveServer]]:
    """`start_server(**env)`: migrate and demo-seed the database, then serve it.
    `setup={...}`: environment of its own for the migration and seeding (a direct route
    to the database when the server's goes through a slow proxy); `background=False`:
    without the email sender and the reconciler (so that only requests use the pool)."""
    started: list[LiveServer] = []

    def start(
        setup: dict[str, str] | None = None, *, background: bool = True, **overrides: str
    ) -> LiveServer:
        workdir = tmp_path / f"server{len(started)}"
        workdir.mkdir()
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DATABASE_URL": database.url,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(smtp_server.port),
            "JWT_SECRET": secrets.token_urlsafe(48),
            "APP_ENV": "development",
            "OUTBOX_POLL_SECONDS": OUTBOX_POLL_SECONDS,
            **overrides,
        }
        if not started:
            setup_env = {**env, **(setup or {})}
            run_cli(["migrate"], setup_env, workdir)
            run_cli(["seed-demo"], setup_env, workdir)
        port = free_port()
        stderr_path = workdir / "server.stderr"
        with stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [*SERVE, "--port", str(port), "--no-migrate"]
                + ([] if background else ["--no-sender"]),
                env=env,
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        server = LiveServer(f"http://127.0.0.1:{port}", process, smtp_server, stderr_path, env)
        started.append(server)
        wait_until_healthy(server, SERVER_START_TIMEOUT)
        return server

    yield start
    for server in started:
        stop_process(server.process)


class Client:
    """A logged-in (or anonymous) caller of a live server, over one keep-alive connection."""

    def __init__(self, server: LiveServer, token: str | None = None) -> None:
        self.server = server
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(headers=headers, timeout=30, trust_env=False)

    def post(self, query: str, **variables: Any) -> httpx.Response:
        return self.http.post(
            self.server.graphql_url, json={"query": query, "variables": variables}
        )

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        response = self.post(query, **variables)
        body = response.json()
        assert response.status_code == 200 and not body.get("errors"), body
        result: dict[str, Any] = body["data"]
        return result

    def timed(self, query: str, **variables: Any) -> tuple[float, httpx.Response]:
        started = time.perf_counter()
        response = self.post(query, **variables)
        return time.perf_counter() - started, response

    def healthz(self) -> float:
        started = time.perf_counter()
        response = self.http.get(f"{self.server.base_url}/healthz")
        assert response.status_code == 200
        return time.perf_counter() - started

    def close(self) -> None:
        self.http.close()


def log_in(server: LiveServer, email: str) -> Client:
    anonymous = Client(server)
    try:
        payload = anonymous.data(LOGIN, e=email, p=DEMO_PASSWORD)["login"]
    finally:
        anonymous.close()
    return Client(server, payload["tokens"]["accessToken"])


def order_code(client: Client, status: str) -> str:
    """A demo order of this customer in `status`."""
    edges = client.data(MY_ORDERS, s=[status])["myOrders"]["edges"]
    assert edges, f"the demo customer has no {status} order"
    code: str = edges[0]["node"]["code"]
    return code


def error_codes(response: httpx.Response) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in response.json().get("errors") or []]
