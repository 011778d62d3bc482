"""End-to-end fixtures: a real SMTP server (aiosmtpd), the real API process
(`python -m app.cli serve`) on a free port, and real GraphQL clients (gql + httpx).

Nothing here builds the app in-process: every request crosses a socket, every email
crosses SMTP. The process plumbing is tests/support/processes.py.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import os
import secrets
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import redis
from aiosmtpd.controller import Controller
from gql import Client, GraphQLRequest
from gql.transport.exceptions import TransportQueryError
from gql.transport.httpx import HTTPXTransport

from app.security import codes
from tests.conftest import service_unreachable
from tests.support.processes import free_port, run_cli, stop_process, wait_until_healthy
from tests.support.subscriptions import (
    channel_subscribers,
    order_channel,
    wait_for_channel_subscribers,
)

DEMO_PASSWORD = "orders-demo-2026"
SERVER_START_TIMEOUT = 20.0
# The server sends queued emails every `outbox_poll_seconds` (2 s by default), which
# OUTBOX_POLL_SECONDS shortens; a server that ignores the variable still delivers in time.
OUTBOX_POLL_SECONDS = "0.5"
# Tests that follow an order live run their server on Redis (THROUGH_REDIS): its pub/sub
# tells when a subscription is registered (PUBSUB NUMSUB), which nothing outside the
# process can see of the in-memory broker. Flushed before each such server starts.
E2E_REDIS_URL = os.environ.get("TEST_E2E_REDIS_URL", "redis://127.0.0.1:6379/10")
THROUGH_REDIS = pytest.mark.server_env(REDIS_URL=E2E_REDIS_URL)
MAIL_TIMEOUT = 10.0

_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Remember each phase's report, so fixtures can tell at teardown whether a test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report


def _test_failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_REPORTS, {})
    return any(report.failed for report in reports.values())


# -- SMTP ---------------------------------------------------------------------------------


class _Collector:
    """aiosmtpd handler: accepts everything and keeps the raw bytes of each message."""

    def __init__(self) -> None:
        self.raw: list[bytes] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.raw.append(bytes(envelope.content))
        return "250 Message accepted for delivery"


@dataclass
class SmtpSink:
    """A real SMTP server on 127.0.0.1:`port` and what it received."""

    port: int
    collector: _Collector

    @property
    def messages(self) -> list[EmailMessage]:
        with self.collector.lock:
            raw = list(self.collector.raw)
        parsed: list[EmailMessage] = []
        for content in raw:
            message = email.message_from_bytes(content, policy=email.policy.default)
            assert isinstance(message, EmailMessage)
            parsed.append(message)
        return parsed

    def wait_for(
        self, n: int, timeout: float = MAIL_TIMEOUT, *, to: str | None = None
    ) -> list[EmailMessage]:
        """Poll until at least `n` messages (addressed `to`, if given) arrived; return them.

        The demo data queues emails for the demo customers too, hence the `to` filter.
        """
        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages if to is None or str(m["To"]) == to]
            if len(found) >= n:
                return found
            if time.monotonic() >= deadline:
                pytest.fail(
                    f"expected {n} email(s){f' to {to}' if to else ''} within {timeout} s, "
                    f"got {len(found)} (all recipients: {[str(m['To']) for m in self.messages]})"
                )
            time.sleep(0.1)


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    collector = _Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSink(port=port, collector=collector)
    finally:
        controller.stop()


# -- the server process -------------------------------------------------------------------


@dataclass
class LiveServer:
    base_url: str
    process: subprocess.Popen[bytes]
    smtp: SmtpSink
    stderr_path: Path
    env: dict[str, str] = field(repr=False)

    @property
    def graphql_url(self) -> str:
        return f"{self.base_url}/graphql"

    def order_channel(self, code: str) -> str:
        """The Redis channel of the order's live updates (a THROUGH_REDIS server)."""
        path = self.env["DATABASE_URL"].removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path)) as db:
            row = db.execute(
                "SELECT id FROM orders WHERE code = ?", (codes.normalise(code),)
            ).fetchone()
        assert row is not None, f"no order {code}"
        return order_channel(int(row[0]), self.env["REDIS_URL"])

    async def following(self, code: str) -> int:
        """How many live subscriptions to the order the server holds (THROUGH_REDIS)."""
        return await channel_subscribers(self.env["REDIS_URL"], self.order_channel(code))

    async def wait_until_following(self, code: str, at_least: int = 1) -> None:
        """Until the server holds `at_least` live subscriptions to the order: an event
        published from then on reaches them (THROUGH_REDIS)."""
        await wait_for_channel_subscribers(
            self.env["REDIS_URL"], self.order_channel(code), at_least
        )

    def stderr_text(self) -> str:
        """Everything the server logged so far (JSON lines on stderr)."""
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "<no stderr file>"

    def stderr_tail(self, chars: int = 4000) -> str:
        return self.stderr_text()[-chars:]


@pytest.fixture
def live_server(
    smtp_server: SmtpSink, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """Migrated, demo-seeded API in its own process, sending mail to `smtp_server`."""
    workdir = tmp_path / "server"
    workdir.mkdir()
    port = free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"sqlite:///{workdir / 'orders.db'}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_server.port),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "APP_ENV": "development",
        "OUTBOX_POLL_SECONDS": OUTBOX_POLL_SECONDS,
    }
    for marker in reversed(list(request.node.iter_markers("server_env"))):
        env.update(marker.kwargs)  # the module's, then the test's own
    if "REDIS_URL" in env:
        _flush(env["REDIS_URL"])
    # seed-demo needs the tables; serve would migrate by itself, but only later.
    run_cli(["migrate"], env, workdir)
    run_cli(["seed-demo"], env, workdir)

    stderr_path = workdir / "server.stderr"
    with (workdir / "server.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=err,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", process, smtp_server, stderr_path, env)
    try:
        wait_until_healthy(server, SERVER_START_TIMEOUT)
        yield server
    finally:
        stop_process(process)
        if _test_failed(request):
            print(f"--- server stderr (tail) ---\n{server.stderr_tail()}")


def _flush(redis_url: str) -> None:
    """A clean Redis database for the server (budgets and breakers of no earlier test)."""
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2)
    try:
        client.flushdb()
    except redis.RedisError as exc:
        service_unreachable("Redis", str(exc))
    finally:
        client.close()


# -- GraphQL clients ----------------------------------------------------------------------


def build_client(url: str, token: str | None = None) -> Client:
    """A real GraphQL client over HTTP, with `Authorization: Bearer <token>` if given."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = HTTPXTransport(url=url, headers=headers, timeout=15.0)
    return Client(transport=transport, fetch_schema_from_transport=False)


class Api:
    """One caller of the live API: `data()` for answers that must succeed, `error()` for
    answers that must fail (returns gql's TransportQueryError with `.errors` and `.data`)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.client = build_client(url, token)

    def data(self, query: str, **variables: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.client.execute(
            GraphQLRequest(query, variable_values=variables or None)
        )
        return result

    def error(self, query: str, **variables: Any) -> TransportQueryError:
        try:
            result = self.client.execute(GraphQLRequest(query, variable_values=variables or None))
        except TransportQueryError as error:
            return error
        pytest.fail(f"expected a GraphQL error, got data {result!r}")


@pytest.fixture
def api(live_server: LiveServer) -> Callable[..., Api]:
    """`api()` is an anonymous caller, `api(token)` a logged-in one."""

    def make(token: str | None = None) -> Api:
        return Api(live_server.graphql_url, token)

    return make


LOGIN = """
mutation Login($email: String!, $password: String!) {
  login(email: $email, password: $password) {
    tokens { accessToken }
    userErrors { field message code }
  }
}
"""


@pytest.fixture
def login(api: Callable[..., Api]) -> Callable[[str, str], str]:
    """Log in over GraphQL and return the access token."""

    def do(email_address: str, password: str = DEMO_PASSWORD) -> str:
        payload = api().data(LOGIN, email=email_address, password=password)["login"]
        assert payload["userErrors"] == [], payload["userErrors"]
        token: str = payload["tokens"]["accessToken"]
        return token

    return do
