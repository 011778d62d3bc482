"""Two real API processes sharing one PostgreSQL database and one Redis, as behind a load
balancer: a scratch database per module (migrated and demo-seeded through the CLI, dropped
at the end), Redis database 14 flushed first, one SMTP sink both instances send to."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import redis
from aiosmtpd.controller import Controller

from app.security import codes
from tests.conftest import IN_CI, scratch_postgres_url
from tests.e2e.conftest import (
    OUTBOX_POLL_SECONDS,
    SERVER_START_TIMEOUT,
    LiveServer,
    SmtpSink,
    _Collector,
)
from tests.support.processes import free_port, run_cli, stop_process, wait_until_healthy
from tests.support.subscriptions import order_channel

SCALE_REDIS_URL = os.environ.get("TEST_SCALE_REDIS_URL", "redis://127.0.0.1:6379/14")
# Budgets of the cluster: the per-user lookup budget is the one test (a) measures; the
# others are wide so that they do not interfere.
RATE_ENV = {
    "RATE_LOOKUPS_PER_USER": "10/minute",
    "RATE_LOOKUPS_PER_IP": "10000/minute",
    "RATE_FAILED_LOOKUPS_PER_USER": "10000/15 minutes",
    "RATE_FAILED_LOOKUPS_PER_IP": "10000/15 minutes",
}


def _unreachable(name: str, problem: str) -> None:
    if IN_CI:
        pytest.fail(f"{name} is required under CI=true but unreachable: {problem}")
    pytest.skip(f"{name} not reachable: {problem}")


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    database_url: str
    smtp: SmtpSink
    redis_url: str

    @property
    def instances(self) -> tuple[LiveServer, LiveServer]:
        return self.a, self.b

    def sql(self, statement: str, *params: object) -> list[tuple[object, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cursor = conn.execute(statement, params)
            return list(cursor.fetchall()) if cursor.description else []

    def scalar(self, statement: str, *params: object) -> object:
        return self.sql(statement, *params)[0][0]

    def order_channel(self, code: str) -> str:
        """The Redis channel on which the instances fan out the order's live updates."""
        order_id = self.scalar("SELECT id FROM orders WHERE code = %s", codes.normalise(code))
        assert isinstance(order_id, int)
        return order_channel(order_id, self.redis_url)


@pytest.fixture(scope="module")
def scratch_database() -> Iterator[str]:
    with scratch_postgres_url("orders_scale") as url:
        yield url


@pytest.fixture(scope="module")
def scale_redis() -> str:
    try:
        client = redis.Redis.from_url(SCALE_REDIS_URL, socket_connect_timeout=2)
        client.ping()
    except Exception as exc:
        _unreachable("Redis", str(exc))
    client.flushdb()
    client.close()
    return SCALE_REDIS_URL


@pytest.fixture(scope="module")
def scale_smtp() -> Iterator[SmtpSink]:
    collector = _Collector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSink(port=port, collector=collector)
    finally:
        controller.stop()


def _start(name: str, env: dict[str, str], workdir: Path, smtp: SmtpSink) -> LiveServer:
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--no-migrate", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    stderr_path = workdir / f"{name}.stderr"
    with (workdir / f"{name}.stdout").open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            command,
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=err,
        )
    return LiveServer(f"http://127.0.0.1:{port}", process, smtp, stderr_path, env)


@contextmanager
def running_cluster(
    database_url: str,
    redis_url: str,
    smtp: SmtpSink,
    workdir: Path,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Migrate and demo-seed `database_url`, then run instances A and B on it and on
    `redis_url` (one JWT secret: a token works on both) until the block ends."""
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp.port),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "APP_ENV": "development",
        "OUTBOX_POLL_SECONDS": OUTBOX_POLL_SECONDS,
        **RATE_ENV,
        **(extra_env or {}),
    }
    # Seeding looks codes up as the warehouse; it must not spend the cluster's budgets.
    setup_env = {k: v for k, v in env.items() if k != "REDIS_URL" and not k.startswith("RATE_")}
    run_cli(["migrate"], setup_env, workdir)
    run_cli(["seed-demo"], setup_env, workdir)
    servers: list[LiveServer] = []
    try:
        for name in ("a", "b"):
            servers.append(_start(name, env, workdir, smtp))
        for server in servers:
            wait_until_healthy(server, SERVER_START_TIMEOUT)
        yield Cluster(servers[0], servers[1], database_url, smtp, redis_url)
    finally:
        for server in servers:
            stop_process(server.process)
        for name, server in zip("ab", servers, strict=False):
            # uvicorn re-raises SIGTERM after a clean shutdown: -SIGTERM is a normal stop.
            if server.process.returncode not in (0, -signal.SIGTERM):
                print(f"--- instance {name} stderr (tail) ---\n{server.stderr_tail()}")


@pytest.fixture(scope="module")
def cluster(
    scratch_database: str,
    scale_redis: str,
    scale_smtp: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("cluster")
    with running_cluster(scratch_database, scale_redis, scale_smtp, workdir) as running:
        yield running


# One real server of its own (tests/e2e's fixtures) for tests that stop it.
from tests.e2e.conftest import live_server, smtp_server  # noqa: E402, F401
