"""A server process killed with SIGKILL in the middle of placeOrder, after the card was
charged and before the order committed: nothing half-written is left, and the retry with
the same idempotency key creates the order once and charges nothing more."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import LiveServer, _stop, _wait_until_healthy, free_port

pytestmark = pytest.mark.e2e

LOGIN = (
    'mutation { login(email: "alice@example.com", password: "orders-demo-2026") '
    "{ tokens { accessToken } } }"
)
PLACE = """
mutation Place($key: String!) {
  placeOrder(lines: [{sku: "LAMP-DESK", quantity: 1}], paymentToken: "tok_slow",
    idempotencyKey: $key,
    shippingAddress: {name: "Alice Example", line1: "1 Demo Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code lines { sku quantity } } userErrors { code message }
  }
}
"""


def _db(server: LiveServer) -> Path:
    return Path(server.env["DATABASE_URL"].removeprefix("sqlite:///"))


def _one(path: Path, sql: str, *args: object) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute(sql, args).fetchone()[0])


def test_sigkill_mid_place_order_leaves_nothing_half_written(live_server: LiveServer) -> None:
    # given alice logged in and the stock of the lamp
    url = live_server.graphql_url
    token = httpx.post(url, json={"query": LOGIN}).json()["data"]["login"]["tokens"]["accessToken"]
    headers = {"authorization": f"Bearer {token}"}
    db = _db(live_server)
    ledger = db.with_name(db.stem + ".payments.db")
    stock_before = _one(db, "SELECT stock FROM products WHERE sku = 'LAMP-DESK'")
    key = "crash-test-key-0001"

    # when placeOrder is in flight (card charged, provider slow to answer) ...
    def attempt() -> None:
        with contextlib.suppress(httpx.TransportError):  # the server dies under it
            httpx.post(
                url, json={"query": PLACE, "variables": {"key": key}}, headers=headers, timeout=10
            )

    caller = threading.Thread(target=attempt)
    caller.start()
    deadline = time.monotonic() + 5
    while (
        _one(
            ledger,
            "SELECT count(*) FROM test_provider_transactions WHERE idempotency_key LIKE ?",
            f"%{key}",
        )
        == 0
    ):
        assert time.monotonic() < deadline, "the charge never happened"
        time.sleep(0.02)
    # ... the process is killed outright
    live_server.process.kill()
    live_server.process.wait(timeout=10)
    caller.join(timeout=10)

    # then the card was charged once, but no order, line, stock change or email exists
    assert (
        _one(
            ledger,
            "SELECT count(*) FROM test_provider_transactions WHERE idempotency_key LIKE ?",
            f"%{key}",
        )
        == 1
    )
    assert _one(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 0
    assert _one(db, "SELECT stock FROM products WHERE sku = 'LAMP-DESK'") == stock_before
    emails_before = _one(db, "SELECT count(*) FROM outbox_emails")

    # when the server comes back and the client retries with the same key
    port = free_port()
    restarted = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=live_server.env,
        cwd=db.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    live_server.process = restarted
    live_server.base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_healthy(live_server)
        body = httpx.post(
            live_server.graphql_url,
            json={"query": PLACE, "variables": {"key": key}},
            headers=headers,
            timeout=15,
        ).json()
    finally:
        _stop(restarted)  # the fixture stops only the process it started

    # then the order exists completely, once, and no second charge was made
    order = body["data"]["placeOrder"]["order"]
    assert order["lines"] == [{"sku": "LAMP-DESK", "quantity": 1}]
    assert _one(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 1
    assert _one(db, "SELECT stock FROM products WHERE sku = 'LAMP-DESK'") == stock_before - 1
    assert (
        _one(
            ledger,
            "SELECT count(*) FROM test_provider_transactions WHERE idempotency_key LIKE ?",
            f"%{key}",
        )
        == 1
    )
    assert _one(db, "SELECT count(*) FROM outbox_emails") == emails_before + 1
