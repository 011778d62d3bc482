"""PostgreSQL unreachable mid-traffic: requests answer SERVICE_UNAVAILABLE (never a stack
trace or INTERNAL), /readyz goes red while /healthz stays up, nothing is half-written, and
the service recovers by itself when the database is back. The outage is real: the server
talks to PostgreSQL through a TCP proxy on loopback that the test cuts and restores."""

from __future__ import annotations

import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.e2e.conftest import SERVER_START_TIMEOUT, SmtpSink
from tests.scale.conftest import _start
from tests.scale.proxy import TcpProxy
from tests.support.processes import run_cli, stop_process, wait_until_healthy

pytestmark = pytest.mark.e2e


LOGIN = (
    'mutation { login(email: "alice@example.com", password: "orders-demo-2026") '
    "{ tokens { accessToken } } }"
)
MY_ORDERS = "{ myOrders(first: 1) { edges { node { code } } } }"
PLACE = """
mutation Place($key: String!) {
  placeOrder(lines: [{sku: "MUG-001", quantity: 1}], paymentToken: "tok_visa",
    idempotencyKey: $key,
    shippingAddress: {name: "Alice Example", line1: "1 Demo Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code } userErrors { code }
  }
}
"""


@pytest.fixture
def outage_server(
    scratch_database: str, scale_smtp: SmtpSink, tmp_path: Path
) -> Iterator[tuple[Any, TcpProxy]]:
    run_cli(
        ["migrate"],
        {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": scratch_database},
        tmp_path,
    )
    run_cli(
        ["seed-demo"],
        {"PATH": os.environ.get("PATH", ""), "DATABASE_URL": scratch_database},
        tmp_path,
    )
    proxy = TcpProxy(("127.0.0.1", 5432))
    proxy.restore()
    database = scratch_database.rsplit("/", 1)[1]
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": f"postgresql://postgres@127.0.0.1:{proxy.port}/{database}",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(scale_smtp.port),
        "JWT_SECRET": secrets.token_urlsafe(48),
        "APP_ENV": "development",
    }
    server = _start("outage", env, tmp_path, scale_smtp)
    try:
        wait_until_healthy(server, SERVER_START_TIMEOUT)
        yield server, proxy
    finally:
        stop_process(server.process)
        proxy.cut()


def _codes(body: dict[str, Any]) -> set[str]:
    return {e.get("extensions", {}).get("code") for e in body.get("errors") or []}


def test_database_outage_is_service_unavailable_and_recovers_by_itself(
    outage_server: tuple[Any, TcpProxy], scratch_database: str
) -> None:
    server, proxy = outage_server
    url = server.graphql_url
    token = httpx.post(url, json={"query": LOGIN}).json()["data"]["login"]["tokens"]["accessToken"]
    headers = {"authorization": f"Bearer {token}"}
    assert not httpx.post(url, json={"query": MY_ORDERS}, headers=headers).json().get("errors")

    # when the database becomes unreachable
    proxy.cut()
    key = f"outage-{uuid.uuid4().hex}"
    reads = httpx.post(url, json={"query": MY_ORDERS}, headers=headers, timeout=30)
    write = httpx.post(
        url, json={"query": PLACE, "variables": {"key": key}}, headers=headers, timeout=30
    )
    ready = httpx.get(f"{server.base_url}/readyz", timeout=30)
    health = httpx.get(f"{server.base_url}/healthz", timeout=30)

    # then every answer is a clean SERVICE_UNAVAILABLE, readiness is red, liveness green
    for response in (reads, write):
        assert response.status_code < 500
        assert _codes(response.json()) == {"SERVICE_UNAVAILABLE"}, response.text
        assert "Traceback" not in response.text and "psycopg" not in response.text
    assert ready.status_code == 503 and ready.json()["checks"]["database"] is False
    assert health.status_code == 200

    # when the database comes back, the server recovers without a restart
    proxy.restore()
    deadline = time.monotonic() + 20
    while True:
        body = httpx.post(url, json={"query": MY_ORDERS}, headers=headers, timeout=30).json()
        if not body.get("errors"):
            break
        assert time.monotonic() < deadline, body
        time.sleep(0.2)
    assert httpx.get(f"{server.base_url}/readyz", timeout=30).status_code == 200

    # and the order attempted during the outage was not half-written
    with psycopg.connect(scratch_database) as conn:
        count = conn.execute(
            "SELECT count(*) FROM orders WHERE idempotency_key = %s", (key,)
        ).fetchone()
    assert count is not None and count[0] == 0
    # and a new order goes through again
    placed = httpx.post(
        url, json={"query": PLACE, "variables": {"key": key}}, headers=headers, timeout=30
    ).json()
    assert placed["data"]["placeOrder"]["order"]["code"]
