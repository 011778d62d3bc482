"""A server process killed with SIGKILL in the middle of placeOrder.

placeOrder reserves the stock (one transaction), charges the card outside any transaction,
then confirms the order (a second one). A kill between the steps leaves a RESERVED
reservation holding the stock and nothing half-written besides:

- killed after the charge: the retry with the same idempotency key creates the order once
  and charges nothing more; without any retry, the reconciler of the restarted server asks
  the provider, finds the charge and confirms the order (its email is sent once);
- killed before the charge: the reconciler of the restarted server releases the
  reservation once it expired (stock back, no order, no charge).
"""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from app.security import codes
from tests.e2e.conftest import SERVER_START_TIMEOUT, LiveServer
from tests.support.processes import free_port, stop_process, wait_until_healthy

pytestmark = pytest.mark.e2e

LOGIN = (
    'mutation { login(email: "alice@example.com", password: "orders-demo-2026") '
    "{ tokens { accessToken } } }"
)
PLACE = """
mutation Place($key: String!, $token: String!) {
  placeOrder(lines: [{sku: "LAMP-DESK", quantity: 1}], paymentToken: $token,
    idempotencyKey: $key,
    shippingAddress: {name: "Alice Example", line1: "1 Demo Street", city: "Berlin",
                      postalCode: "10115", country: "DE"}) {
    order { code lines { sku quantity } } userErrors { code message }
  }
}
"""
STOCK = "SELECT stock FROM products WHERE sku = 'LAMP-DESK'"
# A server whose reconciler looks at reservations 4 s old (longer than any live request
# may take: the 3 s time cap), every 0.5 s, and whose reservations expire after 4 s.
RECONCILE_AFTER_SECONDS = 4.0
RESERVATION_TTL_SECONDS = 4.0
FAST_RECONCILER = pytest.mark.server_env(
    REQUEST_TIMEOUT_SECONDS="3",
    PAYMENT_TIMEOUT_SECONDS="3",
    RECONCILE_AFTER_SECONDS=str(RECONCILE_AFTER_SECONDS),
    RESERVATION_TTL_SECONDS=str(int(RESERVATION_TTL_SECONDS)),
    RECONCILE_INTERVAL_SECONDS="0.5",
)
RECOVERY_TIMEOUT = 20.0


def _db(server: LiveServer) -> Path:
    return Path(server.env["DATABASE_URL"].removeprefix("sqlite:///"))


def _ledger(server: LiveServer) -> Path:
    db = _db(server)
    return db.with_name(db.stem + ".payments.db")


def _one(path: Path, sql: str, *args: object) -> object:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        row = conn.execute(sql, args).fetchone()
        return None if row is None else row[0]


def _count(path: Path, sql: str, *args: object) -> int:
    value = _one(path, sql, *args)
    assert isinstance(value, int), value
    return value


def _charges(server: LiveServer, key: str) -> int:
    """Charges in the provider's ledger made for this idempotency key (any attempt)."""
    return _count(
        _ledger(server),
        "SELECT count(*) FROM test_provider_transactions "
        "WHERE kind = 'charge' AND idempotency_key LIKE ?",
        f"order:%:{key}%",
    )


def _instant(value: object) -> datetime:
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _log_in(server: LiveServer) -> dict[str, str]:
    body = httpx.post(server.graphql_url, json={"query": LOGIN}).json()
    return {"authorization": f"Bearer {body['data']['login']['tokens']['accessToken']}"}


def _place_in_background(
    server: LiveServer, headers: dict[str, str], key: str, token: str
) -> threading.Thread:
    """placeOrder from another thread; the server is killed under it."""

    def attempt() -> None:
        with contextlib.suppress(httpx.TransportError):
            httpx.post(
                server.graphql_url,
                json={"query": PLACE, "variables": {"key": key, "token": token}},
                headers=headers,
                timeout=10,
            )

    caller = threading.Thread(target=attempt)
    caller.start()
    return caller


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll `condition` until it holds; returns the time.monotonic() it first held."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.02)
    return time.monotonic()


def _kill(server: LiveServer, caller: threading.Thread) -> None:
    server.process.kill()  # SIGKILL: no shutdown, no cleanup
    server.process.wait(timeout=10)
    caller.join(timeout=10)


def _kill_once_charged(server: LiveServer, headers: dict[str, str], key: str) -> None:
    """placeOrder in flight with a slow provider (tok_slow answers 2 s after charging):
    once the card is charged, the process is killed outright."""
    caller = _place_in_background(server, headers, key, "tok_slow")
    _wait(lambda: _charges(server, key) > 0, 5, "the charge never happened")
    _kill(server, caller)


def _restart(server: LiveServer) -> subprocess.Popen[bytes]:
    """The same server (same env, same database) on a new port; the caller stops it (the
    fixture only stops the process it started)."""
    db = _db(server)
    port = free_port()
    server.stderr_path = db.parent / "restarted.stderr"  # what the fixture prints on failure
    with server.stderr_path.open("wb") as err:
        restarted = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=server.env,
            cwd=db.parent,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    server.process = restarted
    server.base_url = f"http://127.0.0.1:{port}"
    return restarted


def _confirmations(server: LiveServer, code: str) -> int:
    """Confirmation emails for this order that reached the SMTP sink."""
    shown = codes.display(code)
    return sum(
        1
        for message in server.smtp.messages
        if "confirmed" in str(message["Subject"]) and shown in str(message["Subject"])
    )


def test_sigkill_mid_place_order_leaves_nothing_half_written(live_server: LiveServer) -> None:
    # given alice logged in and the stock of the lamp
    headers = _log_in(live_server)
    db = _db(live_server)
    stock_before = _count(db, STOCK)
    key = "crash-test-key-0001"

    # when placeOrder is in flight (card charged, provider slow to answer) and the
    # process is killed outright
    _kill_once_charged(live_server, headers, key)

    # then the card was charged once, but no order, line or email exists
    assert _charges(live_server, key) == 1
    assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 0
    # The stock is held by the reservation committed before the charge (step 1 of
    # placeOrder): one lamp is taken until the order is confirmed or the reservation
    # released, so that no one else can buy the unit this customer is paying for.
    assert _count(db, STOCK) == stock_before - 1
    assert (
        _one(db, "SELECT status FROM order_reservations WHERE idempotency_key = ?", key)
        == "RESERVED"
    )
    emails_before = _count(db, "SELECT count(*) FROM outbox_emails")

    # when the server comes back and the client retries with the same key
    restarted = _restart(live_server)
    try:
        wait_until_healthy(live_server, SERVER_START_TIMEOUT)
        body = httpx.post(
            live_server.graphql_url,
            json={"query": PLACE, "variables": {"key": key, "token": "tok_slow"}},
            headers=headers,
            timeout=15,
        ).json()
    finally:
        stop_process(restarted)

    # then the order exists completely, once, and no second charge was made
    order = body["data"]["placeOrder"]["order"]
    assert order["lines"] == [{"sku": "LAMP-DESK", "quantity": 1}]
    assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 1
    assert _count(db, STOCK) == stock_before - 1  # the reserved unit, not a second one
    assert _charges(live_server, key) == 1
    assert _count(db, "SELECT count(*) FROM outbox_emails") == emails_before + 1


@FAST_RECONCILER
def test_killed_after_the_charge_the_reconciler_confirms_the_order_without_a_retry(
    live_server: LiveServer,
) -> None:
    # given alice logged in and the stock of the lamp
    headers = _log_in(live_server)
    db = _db(live_server)
    stock_before = _count(db, STOCK)
    key = "crash-reconcile-charged-0001"

    # when the process is killed after the provider took the money (tok_slow answers 2 s
    # after charging) and before the order was confirmed
    _kill_once_charged(live_server, headers, key)
    killed = time.monotonic()
    code = str(_one(db, "SELECT code FROM order_reservations WHERE idempotency_key = ?", key))
    assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 0
    assert _count(db, STOCK) == stock_before - 1  # held by the reservation

    # and the server comes back, with no client retrying
    restarted = _restart(live_server)
    try:
        wait_until_healthy(live_server, SERVER_START_TIMEOUT)
        # then the reconciler confirms the order, and its email reaches the customer
        _wait(
            lambda: _confirmations(live_server, code) >= 1,
            RECOVERY_TIMEOUT,
            "no confirmation email",
        )
        confirmed_after = time.monotonic() - killed
        # ... once: more reconciler passes (every 0.5 s) and outbox polls send nothing more
        time.sleep(3)
        assert _confirmations(live_server, code) == 1
    finally:
        stop_process(restarted)

    print(f"\nkilled after the charge: order confirmed and mailed {confirmed_after:.1f} s later")
    assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 1
    assert _one(db, "SELECT code FROM orders WHERE idempotency_key = ?", key) == code
    assert (
        _count(
            db,
            "SELECT count(*) FROM outbox_emails WHERE dedupe_key = ?",
            f"order-confirmation.{code}",
        )
        == 1
    )
    assert _charges(live_server, key) == 1
    assert _count(db, STOCK) == stock_before - 1
    status, created, resolved = (
        _one(db, f"SELECT {column} FROM order_reservations WHERE idempotency_key = ?", key)
        for column in ("status", "created_at", "resolved_at")
    )
    assert status == "CONFIRMED"
    # not before the reservation was old enough for no live request to still own it
    waited = (_instant(resolved) - _instant(created)).total_seconds()
    assert waited >= RECONCILE_AFTER_SECONDS, waited
    assert confirmed_after < RECOVERY_TIMEOUT


@FAST_RECONCILER
def test_killed_before_the_charge_the_reconciler_releases_the_stock_once_expired(
    live_server: LiveServer,
) -> None:
    # given alice logged in and the stock of the lamp
    headers = _log_in(live_server)
    db = _db(live_server)
    stock_before = _count(db, STOCK)
    key = "crash-reconcile-uncharged-0001"
    reservation = "SELECT {} FROM order_reservations WHERE idempotency_key = ?"

    # when the process is killed while the provider waits before charging
    # (tok_slow_to_charge takes the money 2 s after the call)
    caller = _place_in_background(live_server, headers, key, "tok_slow_to_charge")
    _wait(
        lambda: _one(db, reservation.format("status"), key) == "RESERVED",
        5,
        "the stock was never reserved",
    )
    _kill(live_server, caller)
    killed = time.monotonic()
    code = str(_one(db, reservation.format("code"), key))
    # then nothing was charged, and the stock is held by the reservation
    assert _charges(live_server, key) == 0
    assert _count(db, STOCK) == stock_before - 1

    # when the server comes back (no client retrying)
    restarted = _restart(live_server)
    try:
        wait_until_healthy(live_server, SERVER_START_TIMEOUT)
        # then once the reservation expired, the reconciler gives the stock back
        _wait(lambda: _count(db, STOCK) == stock_before, RECOVERY_TIMEOUT, "no release")
        released_after = time.monotonic() - killed
        time.sleep(1)  # two more reconciler passes: nothing else may change
        print(f"\nkilled before the charge: stock back {released_after:.1f} s later")
        assert _count(db, STOCK) == stock_before
        assert _one(db, reservation.format("status"), key) == "RELEASED"
        expires = _instant(_one(db, reservation.format("expires_at"), key))
        created = _instant(_one(db, reservation.format("created_at"), key))
        resolved = _instant(_one(db, reservation.format("resolved_at"), key))
        assert (expires - created).total_seconds() == pytest.approx(RESERVATION_TTL_SECONDS)
        assert resolved >= expires  # not released while a charge could still come
        assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 0
        assert _charges(live_server, key) == 0
        assert (
            _count(
                db,
                "SELECT count(*) FROM outbox_emails WHERE dedupe_key = ?",
                f"order-confirmation.{code}",
            )
            == 0
        )
        assert _confirmations(live_server, code) == 0

        # and the customer may try the same key again: a new attempt, charged once
        body = httpx.post(
            live_server.graphql_url,
            json={"query": PLACE, "variables": {"key": key, "token": "tok_visa"}},
            headers=headers,
            timeout=15,
        ).json()
    finally:
        stop_process(restarted)
    assert body["data"]["placeOrder"]["userErrors"] == [], body
    assert body["data"]["placeOrder"]["order"]["lines"] == [{"sku": "LAMP-DESK", "quantity": 1}]
    assert _count(db, "SELECT count(*) FROM orders WHERE idempotency_key = ?", key) == 1
    assert _count(db, STOCK) == stock_before - 1
    assert _charges(live_server, key) == 1
    assert str(_one(db, reservation.format("payment_key"), key)).endswith(f":{key}#2")
    assert released_after < RECOVERY_TIMEOUT
